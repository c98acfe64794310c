"""X-Road knowledge: the paths of /etc/xroad, the reader of each file, restarts a change needs."""
