"""Device profiles: one YAML file per sensor model, validated by a strict schema."""
