export const metadata = {
  title: "stackops.webstack example",
  description: "Example app of the stackops.webstack collection",
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", margin: "2rem auto", maxWidth: "44rem" }}>
        {children}
      </body>
    </html>
  );
}
