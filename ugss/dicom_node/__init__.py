"""DICOM node: C-STORE SCP, spool, series jobs, DICOM-SEG/SR encoding, sender. Never imports torch.

Flow (PS3.4 Annex B storage, PS3.3 A.51 SEG, PS3.16 TID 1500 SR)::

    PACS --C-STORE--> scp --atomic write--> spool/ --quiet period--> job (SQLite)
      --> worker: volume, segment, SEG + SR (+ overlay) --> outbox --C-STORE--> destinations

Library logging only (``NullHandler``); the ``ugss-node`` CLI owns handlers and verbosity.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
