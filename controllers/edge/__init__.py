"""The edge agent: decides at the gates when the cloud is away, and syncs its outbox on reconnect."""
