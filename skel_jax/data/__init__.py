"""Raw skeleton formats, preprocessing, the synthetic clip generator and the input pipeline."""
