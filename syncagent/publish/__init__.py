"""``syncagent publish``, on the primary: generations built into the publish dir, its port."""
