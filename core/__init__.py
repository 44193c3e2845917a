"""What every stage of firewatch shares: the domain vocabulary, settings, the place/device registry."""
