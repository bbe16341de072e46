"""Pure decisions: the deployment state machine and the contract's models; no I/O."""
