//! The Parquet column types of SST files: how a user column whose Arrow type Parquet cannot
//! hold (or cannot give back) is stored, and the conversions at the file boundary.
//!
//! Everything in the engine above the SST reader and writer (memtables, merges, scans,
//! compaction's batches) sees the table's own Arrow types; only the bytes in the file use the
//! *file type* of a column ([`file_type`]). The mapping, applied recursively inside lists,
//! maps and structs:
//!
//! | user type | file type (Arrow, as written to Parquet) |
//! |---|---|
//! | `Interval(MonthDayNano)` | `Struct { months: Int32 NOT NULL, days: Int32 NOT NULL, nanoseconds: Int64 NOT NULL }` (Parquet's own `INTERVAL` has no nanoseconds; the struct keeps every bit and any Parquet reader sees three plain columns) |
//! | `Dictionary(K, V)` | the file type of `V` (dictionaries are stored as their values; Parquet dictionary-encodes pages itself) |
//! | `ListView(f)`, `LargeListView(f)` | `List(f')`, `LargeList(f')` |
//! | `List`, `LargeList`, `FixedSizeList`, `Map`, `Struct` | the same type with its children mapped |
//! | anything else | itself |
//!
//! Reads map every batch back ([`from_file`]) to the user types, so the mapping is invisible
//! above this module. Key columns never change type (the key codec accepts none of the mapped
//! types). A file of a table whose file types all equal its user types holds exactly the
//! table's columns ([`crate::schema::TableSchema::sst_file_types_are_user_types`]), and a
//! foreign reader of any other file reads the mapped columns above.
//!
//! Invariant: `from_file(to_file(a), a.data_type()) == a` for every storable array `a`
//! (values and NULLs at every level).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, GenericListArray, Int32Array, Int64Array,
    IntervalMonthDayNanoArray, MapArray, OffsetSizeTrait, StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Int32Type, Int64Type, IntervalMonthDayNano, IntervalUnit,
};

use crate::error::{Error, Result};

/// Names of the fields of a stored `Interval(MonthDayNano)`.
pub const INTERVAL_FIELDS: [&str; 3] = ["months", "days", "nanoseconds"];

fn interval_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new(INTERVAL_FIELDS[0], DataType::Int32, false),
        Field::new(INTERVAL_FIELDS[1], DataType::Int32, false),
        Field::new(INTERVAL_FIELDS[2], DataType::Int64, false),
    ])
}

/// The type a column of `data_type` has in SST files (see the module docs).
pub fn file_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            DataType::Struct(interval_struct_fields())
        }
        DataType::Dictionary(_, value) => file_type(value),
        DataType::List(f) | DataType::ListView(f) => DataType::List(file_field(f)),
        DataType::LargeList(f) | DataType::LargeListView(f) => DataType::LargeList(file_field(f)),
        DataType::FixedSizeList(f, w) => DataType::FixedSizeList(file_field(f), *w),
        DataType::Map(f, ordered) => DataType::Map(file_field(f), *ordered),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(file_field).collect()),
        other => other.clone(),
    }
}

/// `field` with its file type.
pub fn file_field(field: &FieldRef) -> FieldRef {
    let stored = file_type(field.data_type());
    if &stored == field.data_type() {
        Arc::clone(field)
    } else {
        Arc::new(field.as_ref().clone().with_data_type(stored))
    }
}

/// Number of Parquet leaf columns a column of (file) type `data_type` has.
pub fn leaf_columns(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_columns(f.data_type())).sum(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => leaf_columns(f.data_type()),
        DataType::Dictionary(_, value) => leaf_columns(value),
        _ => 1,
    }
}

/// `array` (of a user type) as its file type.
pub fn to_file(array: &ArrayRef) -> Result<ArrayRef> {
    convert(array, &file_type(array.data_type()))
}

/// `array` (of the file type of `user_type`) as `user_type`.
pub fn from_file(array: &ArrayRef, user_type: &DataType) -> Result<ArrayRef> {
    convert(array, user_type)
}

/// Converts between a type and its file type, in either direction.
fn convert(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let from = array.data_type();
    if from == to {
        return Ok(Arc::clone(array));
    }
    let mismatch = || {
        Error::internal(format!(
            "no SST column conversion from {from} to {to} (file type of {to}: {})",
            file_type(to)
        ))
    };
    Ok(match (from, to) {
        (DataType::Interval(IntervalUnit::MonthDayNano), DataType::Struct(_)) => {
            let intervals = array.as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>();
            let values = intervals.values();
            let months: Int32Array = values.iter().map(|v| v.months).collect();
            let days: Int32Array = values.iter().map(|v| v.days).collect();
            let nanos: Int64Array = values.iter().map(|v| v.nanoseconds).collect();
            Arc::new(StructArray::try_new(
                interval_struct_fields(),
                vec![Arc::new(months), Arc::new(days), Arc::new(nanos)],
                intervals.nulls().cloned(),
            )?)
        }
        (DataType::Struct(fields), DataType::Interval(IntervalUnit::MonthDayNano)) => {
            let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            if names != INTERVAL_FIELDS {
                return Err(mismatch());
            }
            let parts = array.as_struct();
            let months = parts.column(0).as_primitive_opt::<Int32Type>();
            let days = parts.column(1).as_primitive_opt::<Int32Type>();
            let nanos = parts.column(2).as_primitive_opt::<Int64Type>();
            let (Some(months), Some(days), Some(nanos)) = (months, days, nanos) else {
                return Err(mismatch());
            };
            let values = (0..parts.len())
                .map(|i| IntervalMonthDayNano::new(months.value(i), days.value(i), nanos.value(i)));
            Arc::new(IntervalMonthDayNanoArray::new(
                values.collect(),
                parts.nulls().cloned(),
            ))
        }
        (DataType::Dictionary(_, value), _) => convert(&cast(array, value)?, to)?,
        (_, DataType::Dictionary(_, value)) => cast(&convert(array, value)?, to)?,
        (DataType::ListView(f), _) => convert(&cast(array, &DataType::List(Arc::clone(f)))?, to)?,
        (DataType::LargeListView(f), _) => {
            convert(&cast(array, &DataType::LargeList(Arc::clone(f)))?, to)?
        }
        (_, DataType::ListView(f)) => cast(&convert(array, &DataType::List(Arc::clone(f)))?, to)?,
        (_, DataType::LargeListView(f)) => {
            cast(&convert(array, &DataType::LargeList(Arc::clone(f)))?, to)?
        }
        (DataType::List(_), DataType::List(f)) => list::<i32>(array, f)?,
        (DataType::LargeList(_), DataType::LargeList(f)) => list::<i64>(array, f)?,
        (DataType::FixedSizeList(_, _), DataType::FixedSizeList(f, w)) => {
            let fixed = array.as_fixed_size_list();
            Arc::new(FixedSizeListArray::try_new_with_length(
                Arc::clone(f),
                *w,
                convert(fixed.values(), f.data_type())?,
                fixed.nulls().cloned(),
                fixed.len(),
            )?)
        }
        (DataType::Map(_, _), DataType::Map(f, ordered)) => {
            let map = array.as_map();
            let entries: ArrayRef = Arc::new(map.entries().clone());
            let entries = convert(&entries, f.data_type())?;
            Arc::new(MapArray::try_new(
                Arc::clone(f),
                map.offsets().clone(),
                entries.as_struct().clone(),
                map.nulls().cloned(),
                *ordered,
            )?)
        }
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let parts = array.as_struct();
            if parts.num_columns() != fields.len() {
                return Err(mismatch());
            }
            let columns = parts
                .columns()
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| convert(c, f.data_type()))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new_with_length(
                fields.clone(),
                columns,
                parts.nulls().cloned(),
                parts.len(),
            )?)
        }
        _ => return Err(mismatch()),
    })
}

fn list<O: OffsetSizeTrait>(array: &ArrayRef, field: &FieldRef) -> Result<ArrayRef> {
    let list = array.as_list::<O>();
    Ok(Arc::new(GenericListArray::<O>::try_new(
        Arc::clone(field),
        list.offsets().clone(),
        convert(list.values(), field.data_type())?,
        list.nulls().cloned(),
    )?))
}
