//! Page checksums: the crc32c of every page of an SST (dictionary and data pages, each with its
//! page header), computed by the writer as the bytes stream out and checked by page-level
//! block reads, so a damaged page is reported as corruption instead of being decoded.
//!
//! The Parquet format has a `crc` field in each page header, but the `parquet` crate does not
//! write it, and a page-level read cannot use the whole-file checksum of the manifest. So the
//! writer walks the page headers of the bytes it writes ([`PageChecksums`]): an SST's pages
//! are everything between the leading magic (`PAR1`) and the end of the last row group (bloom
//! filters, page indexes and the footer follow), one after the other, each a Thrift compact
//! `PageHeader` followed by `compressed_page_size` bytes. The list goes into the footer under
//! `strata.page_crc32c` (see the module docs of `sst`) in file order: row group by row group,
//! column chunk by column chunk (leaf order), the dictionary page (if any) before the data
//! pages.
//!
//! Invariant: the list has one entry per page; a reader finds the entry of a page from the
//! offset index (data pages) and the gap before the first data page (the dictionary page),
//! and refuses a file whose list length disagrees.

/// Largest page header accepted (headers carry page statistics, which the writer bounds).
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Deepest nesting of Thrift structs and containers accepted in a page header.
const MAX_DEPTH: usize = 16;

/// Computes the page checksums of a Parquet file from its bytes, in order.
#[derive(Debug)]
pub(crate) struct PageChecksums {
    /// Bytes consumed so far.
    offset: u64,
    state: State,
    crcs: Vec<u32>,
    error: Option<String>,
}

#[derive(Debug)]
enum State {
    /// Inside the leading magic: bytes left.
    Magic(usize),
    /// Collecting a page header.
    Header(Vec<u8>),
    /// Inside a page's data: its checksum so far and the bytes left.
    Body { crc: u32, remaining: u64 },
    /// Past the last page.
    Done,
}

impl Default for PageChecksums {
    fn default() -> Self {
        PageChecksums {
            offset: 0,
            state: State::Magic(4),
            crcs: Vec::new(),
            error: None,
        }
    }
}

impl PageChecksums {
    /// Consumes the next bytes of the file.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            match &mut self.state {
                State::Done => return,
                State::Magic(left) => {
                    let take = (*left).min(data.len());
                    *left -= take;
                    if *left == 0 {
                        self.state = State::Header(Vec::new());
                    }
                    self.advance(&mut data, take);
                }
                State::Body { crc, remaining } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    *crc = crc32c::crc32c_append(*crc, &data[..take]);
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.crcs.push(*crc);
                        self.state = State::Header(Vec::new());
                    }
                    self.advance(&mut data, take);
                }
                State::Header(buffer) => {
                    // Grow the header buffer geometrically until the header parses, so a large
                    // write is not copied whole.
                    let take = data.len().min(buffer.len().max(64));
                    let before = buffer.len();
                    buffer.extend_from_slice(&data[..take]);
                    match page_header(buffer) {
                        Ok(Some((header_len, compressed))) => {
                            let used = header_len - before;
                            let crc = crc32c::crc32c(&buffer[..header_len]);
                            self.state = if compressed == 0 {
                                self.crcs.push(crc);
                                State::Header(Vec::new())
                            } else {
                                State::Body {
                                    crc,
                                    remaining: compressed,
                                }
                            };
                            self.advance(&mut data, used);
                        }
                        Ok(None) if buffer.len() > MAX_HEADER_BYTES => {
                            self.error = Some(format!(
                                "a page header at byte {} is longer than {MAX_HEADER_BYTES} bytes",
                                self.offset - before as u64
                            ));
                        }
                        Ok(None) => self.advance(&mut data, take),
                        Err(e) => {
                            self.error = Some(format!(
                                "unreadable page header at byte {}: {e}",
                                self.offset - before as u64
                            ))
                        }
                    }
                }
            }
        }
    }

    fn advance(&mut self, data: &mut &[u8], n: usize) {
        self.offset += n as u64;
        *data = &data[n..];
    }

    /// The checksums, once the file's pages end at byte `end` (everything after is not pages);
    /// an error when `end` is not the end of a page.
    pub(crate) fn finish(&mut self, end: u64) -> Result<Vec<u32>, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let at_boundary = matches!(&self.state, State::Header(b) if b.is_empty())
            || matches!(self.state, State::Magic(_));
        if self.offset != end || !at_boundary {
            return Err(format!(
                "the pages end at byte {end}, but {} bytes were seen, the last page unfinished",
                self.offset
            ));
        }
        self.state = State::Done;
        Ok(std::mem::take(&mut self.crcs))
    }
}

/// The footer value of a checksum list: little-endian u32s.
pub(crate) fn encode(crcs: &[u32]) -> Vec<u8> {
    crcs.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Parses [`encode`]'s bytes.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<u32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Why a page header could not be read.
enum Stop {
    /// The bytes end inside the header.
    More,
    /// The bytes are not a page header.
    Bad(&'static str),
}

/// The length of the Thrift compact `PageHeader` at the start of `bytes` and its
/// `compressed_page_size` (field 3); `None` when `bytes` ends inside it.
fn page_header(bytes: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    let mut cursor = Cursor { bytes, pos: 0 };
    match cursor.page_header() {
        Ok(size) => Ok(Some((cursor.pos, size))),
        Err(Stop::More) => Ok(None),
        Err(Stop::Bad(reason)) => Err(reason),
    }
}

/// The fields of a page header that a page decode needs (Thrift `PageHeader`, with its
/// `DataPageHeader`, `DictionaryPageHeader` or `DataPageHeaderV2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageHeaderInfo {
    /// `type`: 0 data page, 2 dictionary page, 3 data page v2.
    pub(crate) page_type: i32,
    pub(crate) uncompressed_page_size: i32,
    pub(crate) compressed_page_size: i32,
    /// `num_values` of the page's own header.
    pub(crate) num_values: i32,
    /// The encoding of the values.
    pub(crate) encoding: i32,
    /// Data page v1: the encoding of the definition levels.
    pub(crate) definition_level_encoding: i32,
    /// Data page v2: the byte lengths of the (uncompressed) levels, and whether the values
    /// are compressed.
    pub(crate) definition_levels_byte_length: i32,
    pub(crate) repetition_levels_byte_length: i32,
    pub(crate) is_compressed: bool,
}

/// Parses the Thrift compact `PageHeader` at the start of `bytes`: its length and fields.
pub(crate) fn parse_page_header(bytes: &[u8]) -> Result<(usize, PageHeaderInfo), &'static str> {
    let mut cursor = Cursor { bytes, pos: 0 };
    let mut info = PageHeaderInfo {
        is_compressed: true,
        ..PageHeaderInfo::default()
    };
    let parsed = cursor.fields(0, &mut |c, id, kind| {
        match (id, kind) {
            (1, 5) => info.page_type = c.i32()?,
            (2, 5) => info.uncompressed_page_size = c.i32()?,
            (3, 5) => info.compressed_page_size = c.i32()?,
            (5, 12) | (7, 12) | (8, 12) => {
                let v2 = id == 8;
                c.fields(1, &mut |c, id, kind| {
                    match (v2, id, kind) {
                        (_, 1, 5) => info.num_values = c.i32()?,
                        (false, 2, 5) | (true, 4, 5) => info.encoding = c.i32()?,
                        (false, 3, 5) => info.definition_level_encoding = c.i32()?,
                        (true, 5, 5) => info.definition_levels_byte_length = c.i32()?,
                        (true, 6, 5) => info.repetition_levels_byte_length = c.i32()?,
                        (true, 7, 1) => info.is_compressed = true,
                        (true, 7, 2) => info.is_compressed = false,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    });
    match parsed {
        Ok(()) => Ok((cursor.pos, info)),
        Err(Stop::More) => Err("the page header ends past its page"),
        Err(Stop::Bad(reason)) => Err(reason),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A handler of one struct field (`id`, compact type `kind`): reads it and returns true, or
/// returns false to have it skipped.
type FieldHandler<'h> = dyn FnMut(&mut Cursor<'_>, i64, u8) -> Result<bool, Stop> + 'h;

impl Cursor<'_> {
    /// Reads the fields of a struct up to its stop byte, handing each to `handle`.
    fn fields(&mut self, depth: usize, handle: &mut FieldHandler<'_>) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad("nested too deeply"));
        }
        let mut last_id = 0i64;
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            let kind = header & 0x0f;
            let delta = header >> 4;
            let id = if delta == 0 {
                zigzag(self.varint()?)
            } else {
                last_id + i64::from(delta)
            };
            last_id = id;
            if !handle(self, id, kind)? {
                self.skip_value(kind, true, depth + 1)?;
            }
        }
    }

    fn i32(&mut self) -> Result<i32, Stop> {
        i32::try_from(zigzag(self.varint()?)).map_err(|_| Stop::Bad("i32 out of range"))
    }
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.bytes.get(self.pos).ok_or(Stop::More)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Stop> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Bad("varint longer than 10 bytes"))
    }

    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        let n = usize::try_from(n).map_err(|_| Stop::Bad("length out of range"))?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Stop::Bad("length out of range"))?;
        if end > self.bytes.len() {
            if n > MAX_HEADER_BYTES {
                return Err(Stop::Bad("length out of range"));
            }
            return Err(Stop::More);
        }
        self.pos = end;
        Ok(())
    }

    fn page_header(&mut self) -> Result<u64, Stop> {
        let mut compressed = None;
        self.fields(0, &mut |c, id, kind| {
            if id != 3 || kind != 5 {
                return Ok(false);
            }
            let size = zigzag(c.varint()?);
            compressed = Some(u64::try_from(size).map_err(|_| Stop::Bad("negative size"))?);
            Ok(true)
        })?;
        compressed.ok_or(Stop::Bad("no compressed_page_size"))
    }

    /// Skips a value of compact type `kind` (`in_field`: a struct field, where booleans live
    /// in the type itself).
    fn skip_value(&mut self, kind: u8, in_field: bool, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad("nested too deeply"));
        }
        match kind {
            1 | 2 if in_field => Ok(()),
            1..=3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let len = self.varint()?;
                self.skip(len)
            }
            9 | 10 => {
                let header = self.byte()?;
                let element = header & 0x0f;
                let size = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..size {
                    self.skip_value(element, false, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let size = self.varint()?;
                if size > 0 {
                    let kinds = self.byte()?;
                    for _ in 0..size {
                        self.skip_value(kinds >> 4, false, depth + 1)?;
                        self.skip_value(kinds & 0x0f, false, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => {
                let mut last_id = 0i64;
                loop {
                    let header = self.byte()?;
                    if header == 0 {
                        return Ok(());
                    }
                    if header >> 4 == 0 {
                        last_id = zigzag(self.varint()?);
                    } else {
                        last_id += i64::from(header >> 4);
                    }
                    let _ = last_id;
                    self.skip_value(header & 0x0f, true, depth + 1)?;
                }
            }
            13 => self.skip(16),
            _ => Err(Stop::Bad("unknown Thrift type")),
        }
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_lists_round_trip() {
        let crcs = vec![0, 1, u32::MAX, 0xDEAD_BEEF];
        assert_eq!(decode(&encode(&crcs)), Some(crcs));
        assert_eq!(decode(&[1, 2, 3]), None);
    }

    #[test]
    fn page_headers_parse_their_fields() {
        // type=DATA_PAGE(0), uncompressed=5, compressed=3, data_page_header{num_values=1,
        // encoding=0, def=3, rep=3}.
        let header = [
            0x15, 0x00, 0x15, 0x0a, 0x15, 0x06, 0x2c, 0x15, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15,
            0x06, 0x00, 0x00, 0xAA,
        ];
        let (len, info) = parse_page_header(&header).unwrap();
        assert_eq!(len, 17);
        assert_eq!(
            info,
            PageHeaderInfo {
                page_type: 0,
                uncompressed_page_size: 5,
                compressed_page_size: 3,
                num_values: 1,
                encoding: 0,
                definition_level_encoding: 3,
                is_compressed: true,
                ..PageHeaderInfo::default()
            }
        );
        assert!(parse_page_header(&header[..10]).is_err());
    }

    #[test]
    fn headers_split_anywhere_parse_the_same() {
        // type=DATA_PAGE(0), uncompressed=5, compressed=3, data_page_header{num_values=1,
        // encoding=0, def=3, rep=3}, then 3 bytes of data; twice; then trailing bytes.
        let header = [
            0x15, 0x00, 0x15, 0x0a, 0x15, 0x06, 0x2c, 0x15, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15,
            0x06, 0x00, 0x00,
        ];
        let mut file = b"PAR1".to_vec();
        for page in [[1u8, 2, 3], [4, 5, 6]] {
            file.extend_from_slice(&header);
            file.extend_from_slice(&page);
        }
        let end = file.len() as u64;
        let mut expected = Vec::new();
        for page in [[1u8, 2, 3], [4, 5, 6]] {
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(&page);
            expected.push(crc32c::crc32c(&bytes));
        }
        for split in 0..file.len() {
            let mut pages = PageChecksums::default();
            pages.feed(&file[..split]);
            pages.feed(&file[split..]);
            assert_eq!(pages.finish(end).unwrap(), expected, "split at {split}");
        }
        let mut short = PageChecksums::default();
        short.feed(&file[..file.len() - 1]);
        assert!(short.finish(end).is_err());
    }
}
