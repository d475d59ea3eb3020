"""Execution module: the networks web's nginx believes forwarded headers from.

TRUSTED_PROXIES may name a proxy by address, by CIDR, or by host name. A name (the stack's
`edge`) is looked up at every start and stands for the whole network that web shares with
it: on that network there is nothing but the edge and web, and a recreated edge comes back
with another address on the same network, which a single address would no longer match.
"""

import ipaddress
import socket

from salt.exceptions import CommandExecutionError

ROUTES = "/proc/net/route"


def _connected_networks():
    """The networks this container sits on directly (routes without a gateway)."""
    networks = []
    with open(ROUTES) as routes:
        next(routes)  # header
        for line in routes:
            fields = line.split()
            destination, gateway, mask = fields[1], fields[2], fields[7]
            if int(gateway, 16) != 0 or int(mask, 16) == 0:
                continue
            # /proc/net/route prints addresses in host (little-endian) byte order
            address = socket.inet_ntoa(int(destination, 16).to_bytes(4, "little"))
            netmask = socket.inet_ntoa(int(mask, 16).to_bytes(4, "little"))
            networks.append(ipaddress.ip_network(f"{address}/{netmask}"))
    return networks


def _addresses(name):
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CommandExecutionError(
            f"TRUSTED_PROXIES names {name!r}, which does not resolve ({exc}): start it first, "
            "or give its address") from exc
    return sorted({info[4][0] for info in infos})


def trusted_networks(entries):
    """CIDRs for ENTRIES: addresses and CIDRs as given, a host name as the directly connected
    network holding its address (or that address alone when no such network exists)."""
    out = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_network(entry, strict=False)))
            continue
        except ValueError:
            pass
        for address in _addresses(entry):
            ip = ipaddress.ip_address(address)
            shared = [net for net in _connected_networks() if ip in net]
            out.append(str(shared[0]) if shared else f"{address}/32")
    return list(dict.fromkeys(out))
