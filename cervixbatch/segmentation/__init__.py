"""The mask maths of the two stages: the photo → cervix → crop → lesion → masks steps
(``two_stage``), the region of interest (``roi``) and the agreement scores (``scores``).
It knows nothing of files, the database or the schedules."""
