"""This node's side: the live tree, its records, staging, the gate, apply, rollback, drift."""
