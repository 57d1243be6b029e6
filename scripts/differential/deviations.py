"""Differences from upstream that are deliberate; each is a row of the README's table
"Upstream compatibility: deliberate deviations". A reply pair matching one is counted under its
name and not as a mismatch.
"""


def match(request, up, ours, upstream_methods):
    """The name of the deviation that explains this pair of normalised replies, or None."""
    method = request[0]
    if method not in upstream_methods:
        return "methods only odysseyd serves (the 2017 draft's pool.volume.*, volume.Import)"
    if up[0] == "empty" and ours[0] == "exc":
        return "typed exception where upstream closes with an empty reply"
    return None
