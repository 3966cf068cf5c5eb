-- Every sale writes the purchase's access state and its grant's state once
-- more when the grant settles. Those columns were read by index predicates
-- (purchases_access_idx, the grants' lookups by account), so each of those
-- updates was a new entry in every index of its table: thirteen for a
-- purchase. Without them in any index, and with room left on each page,
-- the updates are HOT: the row changes in place and no index is touched.
DROP INDEX purchases_access_idx;
CREATE INDEX purchases_product_idx ON purchases (product_key, id);
ALTER TABLE purchases SET (fillfactor = 85);

DROP INDEX access_grants_github_user_idx;
CREATE INDEX access_grants_github_user_idx ON access_grants (github_user_id) WHERE github_user_id IS NOT NULL;
DROP INDEX access_grants_github_login_idx;
CREATE INDEX access_grants_github_login_idx ON access_grants (lower(github_login)) WHERE github_user_id IS NULL;
ALTER TABLE access_grants SET (fillfactor = 85);
