-- sqlite3 workload for hakmem's program tests: 200000 generated rows, two
-- indexes, joins, aggregates, window functions, string building, an update
-- and a delete pass, then an integrity check. Every query orders its output.
PRAGMA cache_size = -16000;
PRAGMA journal_mode = WAL;
PRAGMA threads = 2;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
CREATE TABLE orders(
  id INTEGER PRIMARY KEY,
  customer INTEGER NOT NULL REFERENCES customers(id),
  amount INTEGER NOT NULL,
  day INTEGER NOT NULL,
  note TEXT
);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO customers
SELECT i, 'customer-' || i || '-' || substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1 + i % 17),
       CASE i % 5 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east' WHEN 3 THEN 'west' ELSE 'centre' END
FROM n;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO orders
SELECT i, 1 + (i * 7919) % 5000, (i * 104729) % 100000, (i * 31) % 365,
       CASE WHEN i % 3 = 0 THEN NULL ELSE printf('order %d: %s', i, hex(randomblob(0) || zeroblob(i % 40))) END
FROM n;
COMMIT;
CREATE INDEX orders_customer ON orders(customer, day);
CREATE INDEX orders_amount ON orders(amount);

SELECT 'rows', count(*), sum(amount), min(amount), max(amount), count(note) FROM orders;
SELECT 'region', c.region, count(*), sum(o.amount), round(avg(o.amount), 3)
FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.region ORDER BY c.region;
SELECT 'top', customer, total FROM (
  SELECT customer, sum(amount) AS total FROM orders GROUP BY customer
) ORDER BY total DESC, customer LIMIT 10;
SELECT 'range', count(*), sum(amount) FROM orders WHERE amount BETWEEN 25000 AND 25999;
SELECT 'month', day / 31 AS month, count(*), sum(amount) FROM orders GROUP BY month ORDER BY month;
SELECT 'rank', customer, day, amount, rnk FROM (
  SELECT customer, day, amount, rank() OVER (PARTITION BY customer ORDER BY amount DESC, day) AS rnk
  FROM orders WHERE customer <= 3
) WHERE rnk <= 3 ORDER BY customer, rnk;
SELECT 'running', id, sum(amount) OVER (ORDER BY id ROWS BETWEEN 100 PRECEDING AND CURRENT ROW)
FROM orders WHERE id % 20000 = 0 ORDER BY id;
SELECT 'concat', length(group_concat(name, ',')), substr(group_concat(name, ','), 1, 60)
FROM (SELECT name FROM customers ORDER BY name);
SELECT 'distinct', count(DISTINCT customer), count(DISTINCT day), count(DISTINCT amount % 977) FROM orders;

UPDATE orders SET amount = amount + 1, note = coalesce(note, '') || '!' WHERE day % 7 = 0;
DELETE FROM orders WHERE amount % 11 = 0;
SELECT 'after', count(*), sum(amount), sum(length(note)) FROM orders;
SELECT 'lookup', o.id, c.name, o.amount FROM orders o JOIN customers c ON c.id = o.customer
WHERE o.customer = 4242 ORDER BY o.day, o.id LIMIT 5;
CREATE TABLE summary AS
  SELECT customer, count(*) AS n, sum(amount) AS total, group_concat(day) AS days FROM orders GROUP BY customer;
SELECT 'summary', count(*), sum(n), sum(total), sum(length(days)) FROM summary;
PRAGMA integrity_check;
VACUUM;
SELECT 'vacuumed', count(*) FROM orders;
