"""Container health check: a C-ECHO from ``HEALTHCHECK`` to the node on this host.

Exit 0 when the node answers Success, 1 otherwise. Settings from the environment:
UGSS_AE_TITLE (called AE, default UGSS), UGSS_PORT (default 11112), UGSS_HEALTHCHECK_AE
(calling AE, default HEALTHCHECK; the node's ``peers`` must list it @127.0.0.1).
"""

import os
import sys

from pynetdicom import AE

VERIFICATION = "1.2.840.10008.1.1"


def main() -> int:
    ae = AE(ae_title=os.environ.get("UGSS_HEALTHCHECK_AE", "HEALTHCHECK"))
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    assoc = ae.associate(
        "127.0.0.1",
        int(os.environ.get("UGSS_PORT", "11112")),
        ae_title=os.environ.get("UGSS_AE_TITLE", "UGSS"),
    )
    if not assoc.is_established:
        return 1
    status = assoc.send_c_echo()
    assoc.release()
    return 0 if getattr(status, "Status", 1) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
