"""What the groups (and the run machinery) share: names, partitions, resources, check results, metadata."""
