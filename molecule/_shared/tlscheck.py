"""sslyze's check of a TLS server against Mozilla's intermediate profile.

Runs with the interpreter of .cache/tls-venv (requirements-tls.txt), not the
tests' own: sslyze needs a cryptography that Ansible's collections cannot use.
argv: server name (SNI), port, address. Prints the profile's issues as JSON
({check: explanation}; {} when the server is compliant).
"""

import json
import sys

from sslyze import Scanner, ServerNetworkLocation, ServerScanRequest
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def main() -> None:
    name, port, address = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    scanner = Scanner()
    location = ServerNetworkLocation(name, port, ip_address=address)
    scanner.queue_scans(
        [ServerScanRequest(location, scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)]
    )
    (result,) = scanner.get_results()
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as found:
        print(json.dumps(found.issues))
        return
    print("{}")


main()
