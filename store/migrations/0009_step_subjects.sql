-- A step belongs to a subject: a purchase, a subscription or an order (by
-- uuid), or nothing for global steps (subject_kind 'global', no id). Purchase
-- steps keep their ids, their keys and their indexes: the renamed column is
-- the same column, and the partial indexes follow it.
--
-- Postgres has no foreign key to one of several tables, so the purchases
-- foreign key goes. Subjects are never deleted; that every step's subject
-- exists is held by a test (store.StepsWithoutSubject) instead.
ALTER TABLE steps DROP CONSTRAINT steps_purchase_id_fkey;
ALTER TABLE steps RENAME COLUMN purchase_id TO subject_id;
-- A constant default is stored once, not written into every row; only the
-- few global steps are updated.
ALTER TABLE steps ADD COLUMN subject_kind text NOT NULL DEFAULT 'purchase';
UPDATE steps SET subject_kind = 'global' WHERE subject_id IS NULL;
ALTER TABLE steps ALTER COLUMN subject_kind DROP DEFAULT;
ALTER TABLE steps ADD CONSTRAINT steps_subject_kind_check
    CHECK (subject_kind IN ('purchase', 'subscription', 'order', 'global'));
ALTER TABLE steps ADD CONSTRAINT steps_subject_check CHECK ((subject_id IS NULL) = (subject_kind = 'global'));

-- The unique indexes now read (subject_id, pipeline, name) where subject_id
-- IS NOT NULL and (pipeline, name) where it IS NULL, and steps_waiting_idx
-- (subject_id, pipeline, after_name): uuids are unique across tables, so the
-- id alone keys a subject's steps. Their names stay, for the plans and tests
-- that name them.
