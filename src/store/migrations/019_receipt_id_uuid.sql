-- Receipt ids as `uuid` (issue 16, eleventh round). Every receipt id Deputy ever wrote is the
-- receipt's `jti`, a random UUID (`crypto.randomUUID`, RFC 9562 §5.4); stored as text, each row's
-- unique-index entry held 37 bytes compared by the collation, against 16 bytes compared as
-- bytes for `uuid`. Every gateway call, decision and exchange inserts one: as `uuid` the insert
-- writes ~65 bytes less WAL and less index work (scripts/bench/receipt-row-micro.ts). Same
-- uniqueness (the constraint is rebuilt with the column), same text on the way out (the lower-case
-- canonical form `randomUUID` produces). Rewrites the table and its indexes once: on a large
-- chain this migration takes as long as a copy of the table, under its lock.
ALTER TABLE receipts ALTER COLUMN id TYPE uuid USING id::uuid;
