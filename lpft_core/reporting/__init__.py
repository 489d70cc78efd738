"""Paper-style tables, pictures and the HTML/markdown report of a job."""
