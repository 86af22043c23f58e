"""Training rows: their text (render), as chat tokens (chat), and the curricula that order them
into stages."""
