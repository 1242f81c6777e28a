//! Rebuilding deleted ledger records from what git proves (filled in below).
