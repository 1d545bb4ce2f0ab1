-- A name people give a runtime ("Ada's laptop"), shown beside the one its
-- daemon registers (which a re-registration keeps overwriting). NULL: none.
ALTER TABLE agent_runtime ADD COLUMN custom_name text
    CHECK (custom_name IS NULL OR char_length(custom_name) BETWEEN 1 AND 100);
