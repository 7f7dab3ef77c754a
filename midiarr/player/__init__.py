"""How a player plays a written part: how many notes for this song (`density`) and how hard each one
is struck (`touch`)."""
