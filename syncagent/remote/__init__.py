"""The primary's side: the SFTP connection, its listing, its HEAD, the snapshot a sync takes."""
