"""Drill: every host of the stack dies at once (docker kill: a power cut, no
clean shutdown) and boots again. The stack comes back by itself (PostgreSQL
replication, Redis and Sentinel, the app under PM2, the load balancer), and
a converge of site.yml afterwards changes nothing on any host. The lab's S3
store (host s3, in memory) stays up: it stands for a service outside the
machines that lost power."""

from __future__ import annotations

import time

from drill import kill_host, playbook, record, start_host, wait_until_booted
from labhosts import hosts_in
from sitelab import wait_until_healthy

OUTSIDE = {"s3"}


def test_the_stack_survives_a_power_cut_and_a_converge_changes_nothing():
    wait_until_healthy(what="before the power cut")
    victims = [h for h in hosts_in("all") if h not in OUTSIDE]
    for name in victims:
        kill_host(name)
    started = time.monotonic()
    # Power comes back everywhere at once: the machines boot together (etcd
    # on db1 waits for its peers before systemd calls the boot finished).
    for name in victims:
        start_host(name, wait=False)
    for name in victims:
        wait_until_booted(name, timeout=180)
    booted_s = time.monotonic() - started
    wait_until_healthy(timeout=240, what="after the power cut")
    healthy_s = time.monotonic() - started

    run = playbook("site.yml")
    assert run.changed_hosts() == {}, run.changed_tasks()
    record(
        "power cut of every host, then converge",
        hosts=len(victims),
        booted_s=round(booted_s, 1),
        healthy_s=round(healthy_s, 1),
        converge_s=round(run.seconds, 1),
        changed=0,
    )
