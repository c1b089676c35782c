//! Primary-key predicates to key ranges.
//!
//! A filter DataFusion hands to a scan (`a = 1`, `a IN (1, 2)`, `a BETWEEN 3 AND 9`,
//! `a > 'x' AND a < 'y'`, `a = 1 OR a >= 10`, `a <> 4`) on one key column becomes a sorted,
//! disjoint set of intervals over that column; the intervals of the key columns, taken in key
//! order while the earlier columns are pinned to single values, become engine
//! [`KeyRange`]s over encoded keys (`a = 1 AND b > 5` is the range `(1, 5) < key <= (1, +inf)`).
//!
//! ## Invariants
//!
//! * The ranges always contain every key that satisfies the filters (they may contain more).
//! * A filter reported *exact* ([`is_exact_key_filter`]) is one on the first key column whose
//!   interval set is enforced exactly by the ranges, so the scan may skip re-checking it.
//! * Only literals of the column's own type (or ones that convert to it and back unchanged)
//!   are used, and only types whose key encoding orders like the values (`supports_order`):
//!   floats are left to the residual filter.

use std::cmp::Ordering;
use std::ops::Bound;

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use strata_engine::{KeyRange, KeyValue, TableSchema};

/// The most ranges built from the product of several key columns' values; beyond it the
/// later columns are left to the residual filter.
pub const MAX_PRODUCT_RANGES: usize = 4096;

/// One piece of the key space a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Exactly one full encoded key (a point lookup: memtables, then bloom-filtered files).
    Point(Vec<u8>),
    /// A range of encoded keys.
    Range(KeyRange),
}

impl ScanRange {
    /// The range as an engine key range.
    pub fn to_key_range(&self) -> KeyRange {
        match self {
            ScanRange::Point(key) => KeyRange::point(key.clone()),
            ScanRange::Range(range) => range.clone(),
        }
    }
}

/// True when the key encoding of `data_type` sorts exactly like Arrow's ascending order of
/// its values (so ranges over it are value ranges and a key-ordered scan is value-ordered).
pub fn supports_order(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_)
            | DataType::Decimal128(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// An interval of one column's values (both bounds of the column's type).
#[derive(Debug, Clone, PartialEq)]
struct Interval {
    lower: Bound<ScalarValue>,
    upper: Bound<ScalarValue>,
}

impl Interval {
    fn point(v: ScalarValue) -> Self {
        Interval {
            lower: Bound::Included(v.clone()),
            upper: Bound::Included(v),
        }
    }

    fn as_point(&self) -> Option<&ScalarValue> {
        match (&self.lower, &self.upper) {
            (Bound::Included(a), Bound::Included(b)) if a == b => Some(a),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(a), Bound::Included(b)) => cmp(a, b) == Ordering::Greater,
            (Bound::Included(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b))
            | (Bound::Excluded(a), Bound::Excluded(b)) => cmp(a, b) != Ordering::Less,
            _ => false,
        }
    }
}

fn cmp(a: &ScalarValue, b: &ScalarValue) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// Compares two lower bounds (smaller = admits smaller values).
fn cmp_lower(a: &Bound<ScalarValue>, b: &Bound<ScalarValue>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Less,
        (_, Bound::Unbounded) => Ordering::Greater,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            cmp(x, y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => cmp(x, y).then(Ordering::Less),
        (Bound::Excluded(x), Bound::Included(y)) => cmp(x, y).then(Ordering::Greater),
    }
}

/// Compares two upper bounds (smaller = admits fewer values).
fn cmp_upper(a: &Bound<ScalarValue>, b: &Bound<ScalarValue>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Greater,
        (_, Bound::Unbounded) => Ordering::Less,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            cmp(x, y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => cmp(x, y).then(Ordering::Greater),
        (Bound::Excluded(x), Bound::Included(y)) => cmp(x, y).then(Ordering::Less),
    }
}

/// True when an interval ending at `upper` touches or overlaps one starting at `lower`.
fn touches(upper: &Bound<ScalarValue>, lower: &Bound<ScalarValue>) -> bool {
    match (upper, lower) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(u), Bound::Included(l)) => cmp(u, l) != Ordering::Less,
        (Bound::Included(u), Bound::Excluded(l)) | (Bound::Excluded(u), Bound::Included(l)) => {
            cmp(u, l) != Ordering::Less
        }
        (Bound::Excluded(u), Bound::Excluded(l)) => cmp(u, l) == Ordering::Greater,
    }
}

/// A sorted list of disjoint, non-empty intervals.
#[derive(Debug, Clone, PartialEq)]
struct IntervalSet(Vec<Interval>);

impl IntervalSet {
    fn normalize(mut intervals: Vec<Interval>) -> Self {
        intervals.retain(|i| !i.is_empty());
        intervals.sort_by(|a, b| cmp_lower(&a.lower, &b.lower));
        let mut out: Vec<Interval> = Vec::with_capacity(intervals.len());
        for interval in intervals {
            match out.last_mut() {
                Some(last) if touches(&last.upper, &interval.lower) => {
                    if cmp_upper(&interval.upper, &last.upper) == Ordering::Greater {
                        last.upper = interval.upper;
                    }
                }
                _ => out.push(interval),
            }
        }
        IntervalSet(out)
    }

    fn union(self, other: IntervalSet) -> Self {
        let mut all = self.0;
        all.extend(other.0);
        IntervalSet::normalize(all)
    }

    fn intersect(&self, other: &IntervalSet) -> Self {
        let mut out = Vec::new();
        for a in &self.0 {
            for b in &other.0 {
                let lower = if cmp_lower(&a.lower, &b.lower) == Ordering::Greater {
                    a.lower.clone()
                } else {
                    b.lower.clone()
                };
                let upper = if cmp_upper(&a.upper, &b.upper) == Ordering::Less {
                    a.upper.clone()
                } else {
                    b.upper.clone()
                };
                out.push(Interval { lower, upper });
            }
        }
        IntervalSet::normalize(out)
    }
}

/// A literal converted to the column type `data_type`, only when that loses nothing.
fn literal_for(value: &ScalarValue, data_type: &DataType) -> Option<ScalarValue> {
    if value.is_null() {
        return None;
    }
    if &value.data_type() == data_type {
        return Some(value.clone());
    }
    let cast = value.cast_to(data_type).ok()?;
    let back = cast.cast_to(&value.data_type()).ok()?;
    (back == *value && !cast.is_null()).then_some(cast)
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// The column a predicate restricts and the interval set it allows, when the predicate is a
/// comparison of one column with literals (possibly combined with AND/OR on that column).
/// `type_of` gives the type of a key column usable for ranges.
fn column_set(
    expr: &Expr,
    type_of: &dyn Fn(&str) -> Option<DataType>,
) -> Option<(String, IntervalSet)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let (l_col, l_set) = column_set(left, type_of)?;
                let (r_col, r_set) = column_set(right, type_of)?;
                if l_col != r_col {
                    return None;
                }
                let set = if *op == Operator::And {
                    l_set.intersect(&r_set)
                } else {
                    l_set.union(r_set)
                };
                Some((l_col, set))
            }
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => {
                let (col, value, op) =
                    if let (Some(c), Some(v)) = (column_name(left), literal(right)) {
                        (c, v, *op)
                    } else if let (Some(v), Some(c)) = (literal(left), column_name(right)) {
                        (c, v, op.swap()?)
                    } else {
                        return None;
                    };
                let data_type = type_of(col)?;
                let v = literal_for(value, &data_type)?;
                let intervals = match op {
                    Operator::Eq => vec![Interval::point(v)],
                    Operator::NotEq => vec![
                        Interval {
                            lower: Bound::Unbounded,
                            upper: Bound::Excluded(v.clone()),
                        },
                        Interval {
                            lower: Bound::Excluded(v),
                            upper: Bound::Unbounded,
                        },
                    ],
                    Operator::Lt => vec![Interval {
                        lower: Bound::Unbounded,
                        upper: Bound::Excluded(v),
                    }],
                    Operator::LtEq => vec![Interval {
                        lower: Bound::Unbounded,
                        upper: Bound::Included(v),
                    }],
                    Operator::Gt => vec![Interval {
                        lower: Bound::Excluded(v),
                        upper: Bound::Unbounded,
                    }],
                    Operator::GtEq => vec![Interval {
                        lower: Bound::Included(v),
                        upper: Bound::Unbounded,
                    }],
                    _ => return None,
                };
                Some((col.to_string(), IntervalSet::normalize(intervals)))
            }
            _ => None,
        },
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => {
            let col = column_name(expr)?;
            let data_type = type_of(col)?;
            let points = list
                .iter()
                .map(|e| {
                    literal(e)
                        .and_then(|v| literal_for(v, &data_type))
                        .map(Interval::point)
                })
                .collect::<Option<Vec<_>>>()?;
            Some((col.to_string(), IntervalSet::normalize(points)))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let col = column_name(expr)?;
            let data_type = type_of(col)?;
            let low = literal_for(literal(low)?, &data_type)?;
            let high = literal_for(literal(high)?, &data_type)?;
            Some((
                col.to_string(),
                IntervalSet::normalize(vec![Interval {
                    lower: Bound::Included(low),
                    upper: Bound::Included(high),
                }]),
            ))
        }
        _ => None,
    }
}

/// The type of key column `name` if ranges over it are value ranges.
fn key_type(schema: &TableSchema, name: &str) -> Option<DataType> {
    if schema.has_hidden_rowid() || !schema.primary_key().iter().any(|k| k == name) {
        return None;
    }
    let field = schema.user_schema().field_with_name(name).ok()?;
    supports_order(field.data_type()).then(|| field.data_type().clone())
}

/// True when `filter` is a predicate on the first key column that [`key_ranges`] turns into
/// ranges exactly (so the scan need not evaluate it again).
pub fn is_exact_key_filter(schema: &TableSchema, filter: &Expr) -> bool {
    let Some(first) = schema.primary_key().first() else {
        return false;
    };
    let type_of = |name: &str| key_type(schema, name);
    matches!(column_set(filter, &type_of), Some((col, _)) if &col == first)
}

/// The key ranges that hold every row satisfying all of `filters` (`None`: the whole table).
/// The ranges are sorted and disjoint; an empty list means no row can match.
pub fn key_ranges(schema: &TableSchema, filters: &[Expr]) -> Option<Vec<ScanRange>> {
    if schema.has_hidden_rowid() {
        return None;
    }
    let type_of = |name: &str| key_type(schema, name);
    let key = schema.primary_key();
    let mut sets: Vec<Option<IntervalSet>> = vec![None; key.len()];
    for filter in filters {
        for conjunct in split_conjunction(filter) {
            if let Some((col, set)) = column_set(conjunct, &type_of)
                && let Some(i) = key.iter().position(|k| *k == col)
            {
                sets[i] = Some(match &sets[i] {
                    Some(existing) => existing.intersect(&set),
                    None => set,
                });
            }
        }
    }
    sets[0].as_ref()?;
    // Prefixes of pinned values, extended column by column.
    let mut prefixes: Vec<Vec<ScalarValue>> = vec![Vec::new()];
    let mut last: Option<&IntervalSet> = None;
    for (i, set) in sets.iter().enumerate() {
        let Some(set) = set else { break };
        if set.0.is_empty() {
            return Some(Vec::new());
        }
        let all_points = set.0.iter().all(|iv| iv.as_point().is_some());
        let product = prefixes.len().saturating_mul(set.0.len());
        if i > 0 && product > MAX_PRODUCT_RANGES {
            break;
        }
        if all_points {
            let mut next = Vec::with_capacity(product);
            for prefix in &prefixes {
                for iv in &set.0 {
                    let mut p = prefix.clone();
                    p.extend(iv.as_point().cloned());
                    next.push(p);
                }
            }
            prefixes = next;
            continue;
        }
        last = Some(set);
        break;
    }
    let arity = key.len();
    let mut ranges = Vec::new();
    for prefix in &prefixes {
        let prefix_values = prefix
            .iter()
            .map(key_value)
            .collect::<Option<Vec<KeyValue>>>()?;
        match last {
            None => {
                if prefix.len() == arity {
                    ranges.push(ScanRange::Point(
                        schema.encode_key_values(&prefix_values).ok()?,
                    ));
                } else {
                    let bound = Bound::Included(prefix_values.as_slice());
                    ranges.push(ScanRange::Range(
                        KeyRange::from_values(schema, bound, bound).ok()?,
                    ));
                }
            }
            Some(set) => {
                for iv in &set.0 {
                    let lower_values = extend(&prefix_values, &iv.lower)?;
                    let upper_values = extend(&prefix_values, &iv.upper)?;
                    let lower = bound_ref(&iv.lower, &lower_values, prefix_values.is_empty());
                    let upper = bound_ref(&iv.upper, &upper_values, prefix_values.is_empty());
                    let range = KeyRange::from_values(schema, lower, upper).ok()?;
                    if !range.is_empty() {
                        ranges.push(ScanRange::Range(range));
                    }
                }
            }
        }
    }
    Some(merge_ranges(ranges))
}

/// The values of a bound on top of `prefix` (an unbounded side keeps just the prefix).
fn extend(prefix: &[KeyValue], bound: &Bound<ScalarValue>) -> Option<Vec<KeyValue>> {
    let mut values = prefix.to_vec();
    match bound {
        Bound::Included(v) | Bound::Excluded(v) => values.push(key_value(v)?),
        Bound::Unbounded => {}
    }
    Some(values)
}

/// The engine bound for an interval side: an unbounded side with a pinned prefix becomes the
/// prefix itself, included (every key starting with it).
fn bound_ref<'a>(
    bound: &Bound<ScalarValue>,
    values: &'a [KeyValue],
    no_prefix: bool,
) -> Bound<&'a [KeyValue]> {
    match bound {
        Bound::Included(_) => Bound::Included(values),
        Bound::Excluded(_) => Bound::Excluded(values),
        Bound::Unbounded if no_prefix => Bound::Unbounded,
        Bound::Unbounded => Bound::Included(values),
    }
}

/// Sorts ranges by lower bound and merges the ones that overlap. Points stay points unless a
/// range covers them.
fn merge_ranges(mut ranges: Vec<ScanRange>) -> Vec<ScanRange> {
    ranges.sort_by(|a, b| lower_cmp(&a.to_key_range().lower, &b.to_key_range().lower));
    let mut out: Vec<ScanRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Some(last) = out.last_mut() else {
            out.push(range);
            continue;
        };
        let last_range = last.to_key_range();
        let next = range.to_key_range();
        if upper_reaches(&last_range.upper, &next.lower) {
            if last == &range {
                continue;
            }
            let upper = if upper_cmp(&next.upper, &last_range.upper) == Ordering::Greater {
                next.upper
            } else {
                last_range.upper
            };
            *last = ScanRange::Range(KeyRange::new(last_range.lower, upper));
        } else {
            out.push(range);
        }
    }
    out
}

fn lower_cmp(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Less,
        (_, Bound::Unbounded) => Ordering::Greater,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            x.cmp(y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => x.cmp(y).then(Ordering::Less),
        (Bound::Excluded(x), Bound::Included(y)) => x.cmp(y).then(Ordering::Greater),
    }
}

fn upper_cmp(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Ordering {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Ordering::Equal,
        (Bound::Unbounded, _) => Ordering::Greater,
        (_, Bound::Unbounded) => Ordering::Less,
        (Bound::Included(x), Bound::Included(y)) | (Bound::Excluded(x), Bound::Excluded(y)) => {
            x.cmp(y)
        }
        (Bound::Included(x), Bound::Excluded(y)) => x.cmp(y).then(Ordering::Greater),
        (Bound::Excluded(x), Bound::Included(y)) => x.cmp(y).then(Ordering::Less),
    }
}

/// True when a range ending at `upper` overlaps one starting at `lower` (adjacent excluded
/// bounds do not overlap; merging them would still be correct but is not needed).
fn upper_reaches(upper: &Bound<Vec<u8>>, lower: &Bound<Vec<u8>>) -> bool {
    match (upper, lower) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(u), Bound::Included(l)) => u >= l,
        (Bound::Included(u), Bound::Excluded(l)) | (Bound::Excluded(u), Bound::Included(l)) => {
            u > l
        }
        (Bound::Excluded(u), Bound::Excluded(l)) => u > l,
    }
}

/// The engine's key value for a scalar of a key column's type.
pub fn key_value(value: &ScalarValue) -> Option<KeyValue> {
    Some(match value {
        ScalarValue::Boolean(Some(v)) => KeyValue::Boolean(*v),
        ScalarValue::Int8(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Int16(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Int32(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Int64(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::UInt8(Some(v)) => KeyValue::UInt((*v).into()),
        ScalarValue::UInt16(Some(v)) => KeyValue::UInt((*v).into()),
        ScalarValue::UInt32(Some(v)) => KeyValue::UInt((*v).into()),
        ScalarValue::UInt64(Some(v)) => KeyValue::UInt(*v),
        ScalarValue::Date32(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Date64(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Time32Second(Some(v)) | ScalarValue::Time32Millisecond(Some(v)) => {
            KeyValue::Int((*v).into())
        }
        ScalarValue::Time64Microsecond(Some(v)) | ScalarValue::Time64Nanosecond(Some(v)) => {
            KeyValue::Int((*v).into())
        }
        ScalarValue::TimestampSecond(Some(v), _)
        | ScalarValue::TimestampMillisecond(Some(v), _)
        | ScalarValue::TimestampMicrosecond(Some(v), _)
        | ScalarValue::TimestampNanosecond(Some(v), _)
        | ScalarValue::DurationSecond(Some(v))
        | ScalarValue::DurationMillisecond(Some(v))
        | ScalarValue::DurationMicrosecond(Some(v))
        | ScalarValue::DurationNanosecond(Some(v)) => KeyValue::Int((*v).into()),
        ScalarValue::Decimal128(Some(v), _, _) => KeyValue::Int(*v),
        ScalarValue::Utf8(Some(v))
        | ScalarValue::LargeUtf8(Some(v))
        | ScalarValue::Utf8View(Some(v)) => KeyValue::Utf8(v.clone()),
        ScalarValue::Binary(Some(v))
        | ScalarValue::LargeBinary(Some(v))
        | ScalarValue::BinaryView(Some(v))
        | ScalarValue::FixedSizeBinary(_, Some(v)) => KeyValue::Binary(v.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::{col, lit};

    use super::*;

    fn schema() -> TableSchema {
        let user = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        TableSchema::new(user, &["a", "b"]).unwrap()
    }

    #[test]
    fn first_column_predicates_are_exact() {
        let s = schema();
        assert!(is_exact_key_filter(&s, &col("a").eq(lit(3i64))));
        assert!(is_exact_key_filter(
            &s,
            &col("a").gt(lit(3i64)).or(col("a").eq(lit(1i64)))
        ));
        assert!(!is_exact_key_filter(&s, &col("b").eq(lit("x"))));
        assert!(!is_exact_key_filter(&s, &col("v").eq(lit(1.0))));
        assert!(!is_exact_key_filter(
            &s,
            &col("a").eq(lit(1i64)).or(col("v").eq(lit(1.0)))
        ));
    }

    #[test]
    fn points_and_ranges() {
        let s = schema();
        // a = 1 AND b IN ('x', 'y'): two full-key points.
        let ranges = key_ranges(
            &s,
            &[
                col("a").eq(lit(1i64)),
                col("b").in_list(vec![lit("y"), lit("x")], false),
            ],
        )
        .unwrap();
        assert_eq!(ranges.len(), 2);
        assert!(ranges.iter().all(|r| matches!(r, ScanRange::Point(_))));
        // a > 5 AND a < 3: empty.
        let none = key_ranges(&s, &[col("a").gt(lit(5i64)), col("a").lt(lit(3i64))]).unwrap();
        assert!(none.is_empty());
        // No key predicate: the whole table.
        assert!(key_ranges(&s, &[col("v").eq(lit(1.0))]).is_none());
        // a IN (1, 2, 3) OR a BETWEEN 2 AND 10: the key prefix a = 1 and the range 2..=10.
        let merged = key_ranges(
            &s,
            &[col("a")
                .in_list(vec![lit(1i64), lit(2i64), lit(3i64)], false)
                .or(col("a").between(lit(2i64), lit(10i64)))],
        )
        .unwrap();
        assert_eq!(merged.len(), 2);
    }
}
