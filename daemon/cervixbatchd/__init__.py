"""cervixbatchd: the cervixbatch service (watching the inbox, lifecycle, systemd)."""
