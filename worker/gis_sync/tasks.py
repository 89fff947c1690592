"""GIS -> customer.io tasks (gis.*)."""
