"""Stand-in for the qubesdb Python binding (a C extension Debian does not package), for the
differential harness only: dom0's QubesDB takes every write and holds nothing, as when no qube
runs. Without it, upstream fails every call whose event handlers write to dom0's QubesDB
(setting clockvm, dom0 services), which upstream proper does not.
"""


class Error(Exception):
    pass


class QubesDB:
    def __init__(self, domain=None):
        self.domain = domain

    def read(self, path):
        return None

    def write(self, path, value):
        return None

    def rm(self, path):
        return None

    def list(self, path):
        return []

    def close(self):
        return None
