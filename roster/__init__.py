"""The duty roster (值班表): who is on duty when, in which duty role, and how to reach them."""
