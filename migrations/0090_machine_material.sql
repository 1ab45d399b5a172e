-- The material an operator declared loaded on a machine
-- (`POST /v1/machines/{id}/material`). NULL: not known, and the machine
-- starts jobs of any material it can use, as before; a known material
-- starts only jobs of that material.
ALTER TABLE machines ADD COLUMN loaded_material TEXT;
