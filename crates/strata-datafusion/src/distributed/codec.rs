//! The physical extension codec of Strata's shipped scan ([`StrataCodec`]).
//!
//! The bytes of a [`ShippedScanExec`] (protobuf, [`ScanProto`]): the database's location, the
//! table's name, its user schema (an Arrow IPC stream with no batch), the read columns and
//! how many of them are output, the residual filter and the pruning predicate
//! (datafusion-proto physical expressions over the read columns and the user schema), the
//! limit, rows per batch, the read sequence, the task's number and the number of tasks, the
//! task's files (object path, size, crc32c, rows, and the positions of the rows that are not
//! live as a Roaring bitmap in its portable serialization, as deletion vectors are stored), per
//! partition the row ranges of those files it reads, and the overlay's live rows as an Arrow
//! IPC stream (task 0 only). Everything a worker needs is in the bytes: decoding opens
//! no manifest and takes no lock.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr;
use datafusion_proto::physical_plan::{
    DefaultPhysicalExtensionCodec, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalExprNode;
use prost::Message;

use super::exec::{Piece, ShippedFile, ShippedScan, ShippedScanExec};

/// A shipped scan on the wire (see the module docs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScanProto {
    #[prost(string, tag = "1")]
    location: String,
    #[prost(string, tag = "2")]
    table_name: String,
    #[prost(bytes = "vec", tag = "3")]
    user_schema: Vec<u8>,
    #[prost(uint32, repeated, tag = "4")]
    read_columns: Vec<u32>,
    #[prost(uint32, tag = "5")]
    projection_len: u32,
    #[prost(message, optional, tag = "6")]
    residual: Option<PhysicalExprNode>,
    #[prost(message, optional, tag = "7")]
    predicate: Option<PhysicalExprNode>,
    #[prost(uint64, optional, tag = "8")]
    limit: Option<u64>,
    #[prost(uint64, tag = "9")]
    batch_rows: u64,
    #[prost(uint64, tag = "10")]
    read_seq: u64,
    #[prost(uint32, tag = "11")]
    task: u32,
    #[prost(uint32, tag = "12")]
    tasks: u32,
    #[prost(message, repeated, tag = "13")]
    partitions: Vec<PartitionProto>,
    #[prost(bytes = "vec", optional, tag = "14")]
    overlay: Option<Vec<u8>>,
    #[prost(uint64, tag = "15")]
    overlay_rows_total: u64,
    #[prost(message, repeated, tag = "16")]
    files: Vec<FileProto>,
}

/// One file of the task.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileProto {
    #[prost(string, tag = "1")]
    object: String,
    #[prost(uint64, tag = "2")]
    size: u64,
    #[prost(uint32, tag = "3")]
    crc32c: u32,
    #[prost(uint64, tag = "4")]
    rows: u64,
    #[prost(bytes = "vec", optional, tag = "5")]
    deleted: Option<Vec<u8>>,
}

/// The pieces of one partition.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<PieceProto>,
}

/// One piece: rows `start..end` of a file of the task.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PieceProto {
    #[prost(uint32, tag = "1")]
    file: u32,
    #[prost(uint64, tag = "2")]
    start: u64,
    #[prost(uint64, tag = "3")]
    end: u64,
}

/// Encodes and decodes [`ShippedScanExec`] (register it on the coordinator and on every
/// worker). A worker's codec may be bound to one database: a plan naming another is refused.
#[derive(Debug, Clone, Default)]
pub struct StrataCodec {
    database: Option<String>,
}

impl StrataCodec {
    /// A codec that decodes scans of any database.
    pub fn new() -> Self {
        StrataCodec::default()
    }

    /// A codec that decodes only scans of the database at `location` (as
    /// [`super::database_location`] spells it).
    pub fn for_database(location: String) -> Self {
        StrataCodec {
            database: Some(location),
        }
    }
}

fn proto_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("Strata scan codec: {what}: {e}"))
}

fn schema_ipc(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn batch_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn read_ipc(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

fn encode_expr(expr: &Option<Arc<dyn PhysicalExpr>>) -> Result<Option<PhysicalExprNode>> {
    expr.as_ref()
        .map(|e| serialize_physical_expr(e, &DefaultPhysicalExtensionCodec {}))
        .transpose()
}

fn decode_expr(
    node: &Option<PhysicalExprNode>,
    ctx: &TaskContext,
    schema: &Schema,
) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    node.as_ref()
        .map(|n| parse_physical_expr(n, ctx, schema, &DefaultPhysicalExtensionCodec {}))
        .transpose()
}

/// The protobuf of a shipped scan.
pub fn encode_scan(scan: &ShippedScan) -> Result<ScanProto> {
    let partitions = scan
        .partitions
        .iter()
        .map(|pieces| PartitionProto {
            pieces: pieces
                .iter()
                .map(|p| PieceProto {
                    file: p.file as u32,
                    start: p.start,
                    end: p.end,
                })
                .collect(),
        })
        .collect();
    let files = scan
        .files
        .iter()
        .map(|f| {
            let deleted = match &f.deleted {
                Some(bitmap) => {
                    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
                    bitmap
                        .serialize_into(&mut bytes)
                        .map_err(|e| proto_error("encode deleted rows", e))?;
                    Some(bytes)
                }
                None => None,
            };
            Ok(FileProto {
                object: f.object.clone(),
                size: f.size,
                crc32c: f.crc32c,
                rows: f.rows,
                deleted,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ScanProto {
        location: scan.location.clone(),
        table_name: scan.table_name.clone(),
        user_schema: schema_ipc(&scan.user)?,
        read_columns: scan.read_columns.iter().map(|c| *c as u32).collect(),
        projection_len: scan.projection_len as u32,
        residual: encode_expr(&scan.residual)?,
        predicate: encode_expr(&scan.predicate)?,
        limit: scan.limit.map(|l| l as u64),
        batch_rows: scan.batch_rows as u64,
        read_seq: scan.read_seq,
        task: scan.task as u32,
        tasks: scan.tasks as u32,
        partitions,
        overlay: scan.overlay.as_ref().map(batch_ipc).transpose()?,
        overlay_rows_total: scan.overlay_rows_total as u64,
        files,
    })
}

/// The shipped scan of a protobuf.
pub fn decode_scan(proto: &ScanProto, ctx: &TaskContext) -> Result<ShippedScan> {
    let (user, _) = read_ipc(&proto.user_schema)?;
    let read_columns: Vec<usize> = proto.read_columns.iter().map(|c| *c as usize).collect();
    let projection_len = proto.projection_len as usize;
    if projection_len > read_columns.len() || read_columns.iter().any(|c| *c >= user.fields().len())
    {
        return Err(proto_error(
            "decode",
            "read columns out of the table's schema",
        ));
    }
    let read_schema = user.project(&read_columns)?;
    let overlay = match &proto.overlay {
        Some(bytes) => {
            let (schema, batches) = read_ipc(bytes)?;
            Some(arrow::compute::concat_batches(&schema, &batches)?)
        }
        None => None,
    };
    let files = proto
        .files
        .iter()
        .map(|f| {
            let deleted = match &f.deleted {
                Some(bytes) => Some(Arc::new(
                    roaring::RoaringBitmap::deserialize_from(bytes.as_slice())
                        .map_err(|e| proto_error("decode deleted rows", e))?,
                )),
                None => None,
            };
            Ok(ShippedFile {
                object: f.object.clone(),
                size: f.size,
                crc32c: f.crc32c,
                rows: f.rows,
                deleted,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let partitions: Vec<Vec<Piece>> = proto
        .partitions
        .iter()
        .map(|p| {
            p.pieces
                .iter()
                .map(|piece| Piece {
                    file: piece.file as usize,
                    start: piece.start,
                    end: piece.end,
                })
                .collect()
        })
        .collect();
    if partitions
        .iter()
        .flatten()
        .any(|p| p.file >= files.len() || p.start > p.end || p.end > files[p.file].rows)
    {
        return Err(proto_error("decode", "a piece outside the task's files"));
    }
    Ok(ShippedScan {
        location: proto.location.clone(),
        table_name: proto.table_name.clone(),
        residual: decode_expr(&proto.residual, ctx, &read_schema)?,
        predicate: decode_expr(&proto.predicate, ctx, &user)?,
        user,
        read_columns,
        projection_len,
        limit: proto.limit.map(|l| l as usize),
        batch_rows: (proto.batch_rows as usize).max(1),
        read_seq: proto.read_seq,
        task: proto.task as usize,
        tasks: proto.tasks as usize,
        files,
        partitions,
        overlay,
        overlay_rows_total: proto.overlay_rows_total as usize,
    })
}

impl PhysicalExtensionCodec for StrataCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(proto_error("decode", "a Strata scan has no inputs"));
        }
        let proto = ScanProto::decode(buf).map_err(|e| proto_error("decode", e))?;
        if let Some(database) = &self.database
            && *database != proto.location
        {
            return Err(DataFusionError::Plan(format!(
                "this Strata worker serves the database at {database}, not {} (start a \
                 worker for that database, or without a database argument)",
                proto.location
            )));
        }
        let scan = decode_scan(&proto, ctx)?;
        Ok(Arc::new(ShippedScanExec::new(scan, None)?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let scan = if let Some(exec) = node.downcast_ref::<ShippedScanExec>() {
            exec.scan().clone()
        } else if let Some(parts) = node
            .downcast_ref::<crate::provider::StrataScanExec>()
            .and_then(|s| s.scan_parts())
        {
            // A scan the planner left whole: one task reads everything.
            super::split(&parts, 1)?.swap_remove(0)
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot run on a Strata worker",
                node.name()
            )));
        };
        encode_scan(&scan)?
            .encode(buf)
            .map_err(|e| proto_error("encode", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::{Column, Literal, binary};
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    fn scan() -> ShippedScan {
        let user = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let residual = binary(
            Arc::new(Column::new("v", 1)),
            datafusion::logical_expr::Operator::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(3)))),
            &user,
        )
        .unwrap();
        let overlay = RecordBatch::try_new(
            Arc::clone(&user),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![Some(4), None])),
            ],
        )
        .unwrap();
        let deleted: roaring::RoaringBitmap = [3u32, 4, 9].into_iter().collect();
        ShippedScan {
            location: "s3://bucket/db".into(),
            table_name: "t".into(),
            user: Arc::clone(&user),
            read_columns: vec![0, 1],
            projection_len: 1,
            residual: Some(Arc::clone(&residual)),
            predicate: Some(residual),
            limit: Some(10),
            batch_rows: 8192,
            read_seq: 42,
            task: 0,
            tasks: 2,
            files: vec![ShippedFile {
                object: "sst/t000001/00000000000000000007.parquet".into(),
                size: 1234,
                crc32c: 0xdead_beef,
                rows: 10,
                deleted: Some(Arc::new(deleted)),
            }],
            partitions: vec![
                vec![Piece {
                    file: 0,
                    start: 0,
                    end: 5,
                }],
                vec![Piece {
                    file: 0,
                    start: 5,
                    end: 10,
                }],
            ],
            overlay: Some(overlay),
            overlay_rows_total: 2,
        }
    }

    #[test]
    fn a_shipped_scan_survives_its_bytes() {
        let ctx = SessionContext::new().task_ctx();
        let original = scan();
        let bytes = encode_scan(&original).unwrap().encode_to_vec();
        let decoded = decode_scan(&ScanProto::decode(bytes.as_slice()).unwrap(), &ctx).unwrap();
        assert_eq!(decoded.location, original.location);
        assert_eq!(decoded.user, original.user);
        assert_eq!(decoded.read_columns, original.read_columns);
        assert_eq!(decoded.projection_len, 1);
        assert_eq!(decoded.files, original.files);
        assert_eq!(decoded.partitions, original.partitions);
        assert_eq!(decoded.overlay, original.overlay);
        assert_eq!(
            (decoded.limit, decoded.read_seq, decoded.task, decoded.tasks),
            (Some(10), 42, 0, 2)
        );
        assert_eq!(
            decoded.residual.unwrap().to_string(),
            original.residual.unwrap().to_string()
        );
    }

    #[test]
    fn a_piece_outside_its_file_is_refused() {
        let ctx = SessionContext::new().task_ctx();
        let mut bad = scan();
        bad.partitions[1][0].end = 11;
        let bytes = encode_scan(&bad).unwrap().encode_to_vec();
        let error = decode_scan(&ScanProto::decode(bytes.as_slice()).unwrap(), &ctx).unwrap_err();
        assert!(error.to_string().contains("outside"), "{error}");
        // A worker bound to one database refuses a plan naming another.
        let codec = StrataCodec::for_database("s3://other/db".into());
        let bytes = encode_scan(&scan()).unwrap().encode_to_vec();
        let error = codec
            .try_decode(
                &bytes,
                &[],
                &ctx,
                &datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {},
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("serves the database at s3://other/db"),
            "{error}"
        );
    }
}
