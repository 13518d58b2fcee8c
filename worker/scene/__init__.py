"""What a whole photo or gallery shows: the tilt of its horizon or verticals, and gallery-level culling."""
