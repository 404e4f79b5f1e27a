-- Shared parsing and arithmetic macros, created in every DuckDB session before a silver or gold
-- SQL file runs. Each rule of docs/rules.md that more than one table uses lives here, once.

-- Text: trimmed, empty -> null.
CREATE OR REPLACE MACRO clean_text(x) AS nullif(trim(x), '');

-- Dates, strictly (docs/rules.md, "Dates"): YYYY-MM-DD; a full ISO date-time
-- YYYY-MM-DDTHH:MM:SS[.ffffff] with an optional Z or +HH[:MM] offset (a valid time of day; the date
-- as written is taken); or US MM/DD/YYYY (1 or 2 digit month and day). Anything else -> null, and
-- so are dates that do not exist (2023-02-29) and text around a date (2025-12-31garbage).
CREATE OR REPLACE MACRO is_iso_date_time(t) AS regexp_full_match(t,
    '[0-9]{4}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?');
CREATE OR REPLACE MACRO parse_date(x) AS CAST(CASE
    WHEN is_iso_date_time(clean_text(x)) THEN try_strptime(left(clean_text(x), 10), '%Y-%m-%d')
    WHEN regexp_full_match(clean_text(x), '[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}')
        THEN try_strptime(clean_text(x), '%m/%d/%Y')
    END AS DATE);

-- Date bounds: a parsed date d counts only within [1900-01-01, the record's ingestion date (UTC)
-- + `ahead`] (an INTERVAL), else null. Relative to the record itself, so that rebuilding silver
-- from bronze on any later day gives the same rows; wide enough for any real pet, customer, claim
-- or policy date, narrow enough that no gold table can span millennia.
CREATE OR REPLACE MACRO bounded_date(d, ingested_at, ahead) AS CASE
    WHEN d >= DATE '1900-01-01' AND d <= CAST(CAST(ingested_at AS DATE) + ahead AS DATE) THEN d END;

-- Timestamps (updated_at): the same grammar as parse_date, strictly; a date alone is midnight.
CREATE OR REPLACE MACRO parse_ts(x) AS CASE
    WHEN is_iso_date_time(clean_text(x)) THEN try_cast(clean_text(x) AS TIMESTAMP)
    ELSE CAST(parse_date(x) AS TIMESTAMP) END;

-- updated_at bounds: a version stamped before 1900 or more than a day after it was ingested (a
-- clock error, 9999-12-31) would win deduplication for ever: such a stamp is null, and a version
-- with no usable stamp sorts as the oldest.
CREATE OR REPLACE MACRO bounded_ts(ts, ingested_at) AS CASE
    WHEN ts >= TIMESTAMP '1900-01-01' AND ts <= CAST(ingested_at AS TIMESTAMP) + INTERVAL 1 DAY
    THEN ts END;

-- Money: exact decimal with 2 places; unparseable -> null.
CREATE OR REPLACE MACRO parse_money(x) AS try_cast(clean_text(x) AS DECIMAL(18, 2));
-- Amounts (claim, paid, premium, deductible, coverage limit): money whose magnitude is below 10^9,
-- else null. The bound keeps every sum of gold exact in DECIMAL(18, 2) (up to 10^7 claims at the
-- bound) and every rounded division inside a HUGEINT.
CREATE OR REPLACE MACRO parse_amount(x) AS CASE
    WHEN abs(parse_money(x)) < 1000000000 THEN parse_money(x) END;
CREATE OR REPLACE MACRO parse_double(x) AS try_cast(clean_text(x) AS DOUBLE);
CREATE OR REPLACE MACRO parse_int(x) AS try_cast(clean_text(x) AS INTEGER);

-- Booleans: true/false, t/f, yes/no, y/n, 1/0 in any case; anything else -> null.
CREATE OR REPLACE MACRO parse_bool(x) AS CASE
    WHEN lower(clean_text(x)) IN ('true', 't', 'yes', 'y', '1') THEN true
    WHEN lower(clean_text(x)) IN ('false', 'f', 'no', 'n', '0') THEN false END;

-- Accepted values: the canonical spelling from `accepted` matching x case-insensitively, else null.
-- (The lower-cased list is a constant DuckDB folds once; a filter lambda would run per row.)
CREATE OR REPLACE MACRO canonical(x, accepted) AS
    accepted[list_position(list_transform(accepted, lambda a: lower(a)), lower(clean_text(x)))];

-- Email: lower-cased; must look like local@domain.tld, else null.
CREATE OR REPLACE MACRO clean_email(x) AS CASE
    WHEN regexp_full_match(lower(clean_text(x)), '[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}')
    THEN lower(clean_text(x)) END;

-- Phone: the digits must be 10, or 11 starting with 1; formatted (XXX) XXX-XXXX, else null.
CREATE OR REPLACE MACRO phone_digits(x) AS regexp_replace(coalesce(x, ''), '[^0-9]', '', 'g');
CREATE OR REPLACE MACRO clean_phone(x) AS CASE
    WHEN length(phone_digits(x)) = 10 OR (length(phone_digits(x)) = 11 AND phone_digits(x)[1] = '1')
    THEN '(' || right(phone_digits(x), 10)[1:3] || ') ' || right(phone_digits(x), 10)[4:6] || '-'
         || right(phone_digits(x), 10)[7:10] END;

-- US state: a 2-letter code in any case, or a full name (any case) mapped to its code, else null.
CREATE OR REPLACE MACRO clean_state(x) AS MAP {
    'al': 'AL', 'alabama': 'AL', 'ak': 'AK', 'alaska': 'AK', 'az': 'AZ', 'arizona': 'AZ',
    'ar': 'AR', 'arkansas': 'AR', 'ca': 'CA', 'california': 'CA', 'co': 'CO', 'colorado': 'CO',
    'ct': 'CT', 'connecticut': 'CT', 'de': 'DE', 'delaware': 'DE', 'dc': 'DC',
    'district of columbia': 'DC', 'fl': 'FL', 'florida': 'FL', 'ga': 'GA', 'georgia': 'GA',
    'hi': 'HI', 'hawaii': 'HI', 'id': 'ID', 'idaho': 'ID', 'il': 'IL', 'illinois': 'IL',
    'in': 'IN', 'indiana': 'IN', 'ia': 'IA', 'iowa': 'IA', 'ks': 'KS', 'kansas': 'KS',
    'ky': 'KY', 'kentucky': 'KY', 'la': 'LA', 'louisiana': 'LA', 'me': 'ME', 'maine': 'ME',
    'md': 'MD', 'maryland': 'MD', 'ma': 'MA', 'massachusetts': 'MA', 'mi': 'MI',
    'michigan': 'MI', 'mn': 'MN', 'minnesota': 'MN', 'ms': 'MS', 'mississippi': 'MS',
    'mo': 'MO', 'missouri': 'MO', 'mt': 'MT', 'montana': 'MT', 'ne': 'NE', 'nebraska': 'NE',
    'nv': 'NV', 'nevada': 'NV', 'nh': 'NH', 'new hampshire': 'NH', 'nj': 'NJ',
    'new jersey': 'NJ', 'nm': 'NM', 'new mexico': 'NM', 'ny': 'NY', 'new york': 'NY',
    'nc': 'NC', 'north carolina': 'NC', 'nd': 'ND', 'north dakota': 'ND', 'oh': 'OH',
    'ohio': 'OH', 'ok': 'OK', 'oklahoma': 'OK', 'or': 'OR', 'oregon': 'OR', 'pa': 'PA',
    'pennsylvania': 'PA', 'ri': 'RI', 'rhode island': 'RI', 'sc': 'SC',
    'south carolina': 'SC', 'sd': 'SD', 'south dakota': 'SD', 'tn': 'TN', 'tennessee': 'TN',
    'tx': 'TX', 'texas': 'TX', 'ut': 'UT', 'utah': 'UT', 'vt': 'VT', 'vermont': 'VT',
    'va': 'VA', 'virginia': 'VA', 'wa': 'WA', 'washington': 'WA', 'wv': 'WV',
    'west virginia': 'WV', 'wi': 'WI', 'wisconsin': 'WI', 'wy': 'WY', 'wyoming': 'WY'
}[lower(clean_text(x))];

CREATE OR REPLACE MACRO clean_zip(x) AS CASE
    WHEN regexp_full_match(clean_text(x), '[0-9]{5}') THEN clean_text(x) END;

-- _quality_score = round(100 * valid / checked), half away from zero, as an integer.
CREATE OR REPLACE MACRO quality_score(valid, checked) AS
    CAST((200 * valid + checked) // (2 * checked) AS INTEGER);

-- Exact rounded division n / d to `s` decimals, half away from zero, as a DOUBLE (the nearest
-- double to the exactly rounded decimal); null when d is null or 0. n and d may be DECIMAL or
-- integer with at most 6 decimals, which covers money and counts. Scaled to integers as
-- DECIMAL(38, 6) first, so that no integer type of the input (Spark sums INT as BIGINT) can
-- overflow: |n|, |d| < 10^20 fit the 128-bit arithmetic.
CREATE OR REPLACE MACRO scaled_int(x) AS CAST(CAST(x AS DECIMAL(38, 6)) * 1000000 AS HUGEINT);
CREATE OR REPLACE MACRO div_round(n, d, s) AS CASE WHEN d IS NULL OR d = 0 OR n IS NULL THEN NULL
    ELSE sign(n) * sign(d) * (
        (abs(scaled_int(n)) * CAST(pow(10, s) AS HUGEINT) * 2 + abs(scaled_int(d)))
        // (2 * abs(scaled_int(d)))) / pow(10, s) END;
CREATE OR REPLACE MACRO ratio(n, d) AS div_round(n, d, 4);
CREATE OR REPLACE MACRO pct(n, d) AS div_round(n, d, 2);
CREATE OR REPLACE MACRO money_div(n, d) AS CAST(div_round(n, d, 2) AS DECIMAL(18, 2));

-- A person's name: first and last joined by one space, a missing part left out, null when both are.
CREATE OR REPLACE MACRO full_name(first_name, last_name) AS
    nullif(concat_ws(' ', first_name, last_name), '');

-- Free text shown outside the lake (exports, snapshots, API): e-mail addresses become [email] and
-- phone numbers (10 digits, optionally +1 first, in the usual groupings) [phone].
CREATE OR REPLACE MACRO mask_contacts(x) AS regexp_replace(
    regexp_replace(x, '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}', '[email]', 'g'),
    '(\+?1[ .-]?)?(\([0-9]{3}\)|[0-9]{3})[ .-]?[0-9]{3}[ .-]?[0-9]{4}', '[phone]', 'g');

-- Whole months between a and b (a <= b), 0 when b < a (docs/rules.md, "Vocabulary").
CREATE OR REPLACE MACRO whole_months(a, b) AS CASE WHEN b < a THEN 0 ELSE
    12 * (year(b) - year(a)) + (month(b) - month(a)) - CASE WHEN day(b) < day(a) THEN 1 ELSE 0 END
    END;
-- Age in whole years at as_of.
CREATE OR REPLACE MACRO age_years(dob, as_of) AS whole_months(dob, as_of) // 12;
-- A month index for calendar-month arithmetic.
CREATE OR REPLACE MACRO month_index(d) AS 12 * year(d) + month(d) - 1;

-- The original text of a rejected bronze record: the unparsed text when it could not be parsed,
-- else the whole bronze row as JSON.
CREATE OR REPLACE MACRO bronze_record_text(b) AS coalesce(b._raw_record, CAST(to_json(b) AS VARCHAR));
