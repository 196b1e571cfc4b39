"""What every writer of results shares, below sweeps, search and training: the append-only JSON-lines
ledger (`ledger.Ledger`) and the one-writer-per-folder lock (`folder_lock.folder_lock`). Imports nothing
of scaleflow but `files`."""
from scaleflow.storage.folder_lock import LOCK_FILE, FolderBusy, check_not_busy, holds, lock_holder
from scaleflow.storage.ledger import Ledger

# `folder_lock` the function is not re-exported here: it would hide the module of the same name.
__all__ = ["LOCK_FILE", "FolderBusy", "Ledger", "check_not_busy", "holds", "lock_holder"]
