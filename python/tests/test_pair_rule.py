"""The pair rule from Python gives the answers of the one shared table,
crates/peer-core/pair_rule.tsv, which natkit-peer-core's own tests check too."""

from __future__ import annotations

import itertools

import pytest

import natkit
from conftest import REPO

TABLE = REPO / "crates" / "peer-core" / "pair_rule.tsv"
BEHAVIOUR = {
    "EI": "endpoint-independent",
    "AD": "address-dependent",
    "APD": "address-and-port-dependent",
}


def side(text: str):
    """The table's notation as the protocol's NAT summary (or None); `@ipv4,ipv6` after it
    names the side's address families, `+MAPPING/FILTERING` its IPv6 behaviours."""
    text, _, ipv6 = text.partition("+")
    text, _, families = text.partition("@")
    nat = summary(text)
    if nat is not None and families:
        nat["families"] = families.split(",")
    if nat is not None and ipv6:
        nat["ipv6"] = summary(ipv6)
    return nat


def summary(text: str):
    if text == "-":
        return None
    if text == "blocked":
        return {"mapping": [], "filtering": [], "udp_blocked": True}
    mapping, filtering = text.split("/")
    return {
        "mapping": [BEHAVIOUR[b] for b in mapping.split(",")],
        "filtering": [BEHAVIOUR[b] for b in filtering.split(",")],
        "udp_blocked": False,
    }


def rows():
    lines = [l for l in TABLE.read_text().splitlines() if l and not l.startswith("#")]
    header, *body = lines
    assert header.split("\t") == ["mode", "local", "remote", "policy", "rule"]
    return [tuple(l.split("\t")) for l in body]


@pytest.mark.parametrize("mode,local,remote,policy,rule", rows())
def test_every_row_of_the_shared_table(mode, local, remote, policy, rule):
    offerer, answerer = (
        natkit.pair_rule(side(local), side(remote), relay=mode, role=role)
        for role in ("offerer", "answerer")
    )
    both = {(True, True): "relay", (False, False): "all", (False, True): "answerer"}
    assert (both[offerer.relay_only, answerer.relay_only], offerer.rule, answerer.rule) == (
        policy,
        rule,
        rule,
    )
    assert offerer.reason and answerer.reason
    # Without a role, the answerer's decision (what pair_rule said before roles).
    assert natkit.pair_rule(side(local), side(remote), relay=mode) == answerer


def test_the_table_covers_every_mapping_and_filtering_pair():
    sides = [f"{m}/{f}" for m, f in itertools.product(BEHAVIOUR, repeat=2)]
    auto = {(l, r) for mode, l, r, _, _ in rows() if mode == "auto"}
    missing = [(l, r) for l, r in itertools.product(sides, repeat=2) if (l, r) not in auto]
    assert not missing


def test_bad_input_is_a_clear_value_error():
    with pytest.raises(ValueError, match="relay must be"):
        natkit.pair_rule(None, None, relay="sometimes")
    with pytest.raises(ValueError, match="role must be"):
        natkit.pair_rule(None, None, role="caller")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local"):
        natkit.pair_rule({"mapping": "symmetric"}, None)
