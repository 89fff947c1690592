"""The generated data the simulators serve: the GIS world (offices, people, applications)
and the Segment profile world. Both are deterministic for their seed and sizes."""
