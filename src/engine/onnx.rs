//! What jetwatch needs to know about an ONNX model without an inference runtime: the graph's
//! inputs and outputs (names, element types, shapes) and the model's `metadata_props`
//! (Ultralytics writes the class names there as `names`).
//!
//! The TensorRT path uses it (TensorRT's plan carries shapes but not the ONNX metadata), so
//! it must not depend on ONNX Runtime. It is a bounds-checked reader of the protobuf wire
//! format that walks only the fields below and skips everything else by length, so a
//! 100 MB model costs one pass over its top-level fields and no copies of its weights.
//!
//! Field numbers from onnx/onnx.proto3 (stable since IR version 3):
//! `ModelProto { ir_version = 1; graph = 7; metadata_props = 14 }`,
//! `StringStringEntryProto { key = 1; value = 2 }`,
//! `GraphProto { initializer = 5; input = 11; output = 12 }`, `TensorProto { name = 8 }`,
//! `ValueInfoProto { name = 1; type = 2 }`, `TypeProto { tensor_type = 1 }`,
//! `TypeProto.Tensor { elem_type = 1; shape = 2 }`, `TensorShapeProto { dim = 1 }`,
//! `Dimension { dim_value = 1; dim_param = 2 }`.
//!
//! Graph inputs that are also initializers (models of IR version < 4 list their weights as
//! inputs) are not inputs a caller feeds, and are left out of [`OnnxSummary::inputs`].

use std::collections::HashSet;

/// ONNX `TensorProto.DataType` values jetwatch binds.
pub const ELEM_FLOAT: i32 = 1;
pub const ELEM_FLOAT16: i32 = 10;

/// One dimension of a tensor shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// `dim_value`.
    Fixed(i64),
    /// `dim_param`: a named symbolic dimension (e.g. `batch`).
    Symbolic(String),
    /// Neither is set.
    Unknown,
}

impl Dim {
    /// The size, if fixed and positive.
    pub fn fixed(&self) -> Option<usize> {
        match *self {
            Dim::Fixed(v) if v > 0 => usize::try_from(v).ok(),
            _ => None,
        }
    }
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// `TensorProto.DataType` (1 float, 10 float16, …); 0 when the value is not a tensor or
    /// the type is not given.
    pub elem_type: i32,
    /// The shape, when the model declares one.
    pub dims: Option<Vec<Dim>>,
}

/// The parts of a `ModelProto` jetwatch reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxSummary {
    pub ir_version: i64,
    /// Inputs the caller feeds (initializers excluded), in graph order.
    pub inputs: Vec<ValueInfo>,
    /// Outputs, in graph order.
    pub outputs: Vec<ValueInfo>,
    /// `metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
}

impl OnnxSummary {
    /// Parses a serialized `ModelProto`. Errors name what is malformed and where.
    pub fn parse(bytes: &[u8]) -> Result<OnnxSummary, String> {
        let mut out = OnnxSummary::default();
        let mut graph = None;
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (1, Value::Varint(v)) => out.ir_version = v as i64,
                (7, Value::Bytes(b)) => graph = Some(b),
                (14, Value::Bytes(b)) => out.metadata.push(parse_entry(b)?),
                (1 | 7 | 14, _) => return Err(wrong_type("ModelProto", field)),
                _ => {}
            }
        }
        let graph = graph.ok_or("not an ONNX model: ModelProto has no graph (field 7)")?;
        let mut initializers = HashSet::new();
        let mut inputs = Vec::new();
        let mut r = Reader::new(graph);
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (5, Value::Bytes(b)) => {
                    if let Some(name) = tensor_name(b)? {
                        initializers.insert(name);
                    }
                }
                (11, Value::Bytes(b)) => inputs.push(parse_value_info(b)?),
                (12, Value::Bytes(b)) => out.outputs.push(parse_value_info(b)?),
                (5 | 11 | 12, _) => return Err(wrong_type("GraphProto", field)),
                _ => {}
            }
        }
        out.inputs = inputs
            .into_iter()
            .filter(|i| !initializers.contains(&i.name))
            .collect();
        Ok(out)
    }

    /// The value of metadata key `key` (the first, if repeated).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn wrong_type(message: &str, field: u32) -> String {
    format!("malformed ONNX model: {message} field {field} has the wrong wire type")
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("malformed ONNX model: {what} is not UTF-8"))
}

fn parse_entry(b: &[u8]) -> Result<(String, String), String> {
    let (mut key, mut value) = (String::new(), String::new());
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Value::Bytes(s)) => key = utf8(s, "a metadata key")?,
            (2, Value::Bytes(s)) => value = utf8(s, "a metadata value")?,
            (1 | 2, _) => return Err(wrong_type("StringStringEntryProto", field)),
            _ => {}
        }
    }
    Ok((key, value))
}

fn tensor_name(b: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader::new(b);
    let mut name = None;
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (8, Value::Bytes(s)) => name = Some(utf8(s, "an initializer name")?),
            (8, _) => return Err(wrong_type("TensorProto", field)),
            _ => {}
        }
    }
    Ok(name)
}

fn parse_value_info(b: &[u8]) -> Result<ValueInfo, String> {
    let mut info = ValueInfo {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Value::Bytes(s)) => info.name = utf8(s, "a value name")?,
            (2, Value::Bytes(t)) => parse_type(t, &mut info)?,
            (1 | 2, _) => return Err(wrong_type("ValueInfoProto", field)),
            _ => {}
        }
    }
    Ok(info)
}

/// `TypeProto`: only `tensor_type` (a sequence or map leaves `elem_type` 0).
fn parse_type(b: &[u8], info: &mut ValueInfo) -> Result<(), String> {
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Value::Bytes(t)) => {
                let mut r = Reader::new(t);
                while let Some((field, v)) = r.next()? {
                    match (field, v) {
                        (1, Value::Varint(e)) => info.elem_type = e as i32,
                        (2, Value::Bytes(s)) => info.dims = Some(parse_shape(s)?),
                        (1 | 2, _) => return Err(wrong_type("TypeProto.Tensor", field)),
                        _ => {}
                    }
                }
            }
            (1, _) => return Err(wrong_type("TypeProto", field)),
            _ => {}
        }
    }
    Ok(())
}

fn parse_shape(b: &[u8]) -> Result<Vec<Dim>, String> {
    let mut dims = Vec::new();
    let mut r = Reader::new(b);
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Value::Bytes(d)) => {
                let mut dim = Dim::Unknown;
                let mut r = Reader::new(d);
                while let Some((field, v)) = r.next()? {
                    match (field, v) {
                        (1, Value::Varint(x)) => dim = Dim::Fixed(x as i64),
                        (2, Value::Bytes(s)) => dim = Dim::Symbolic(utf8(s, "a dim_param")?),
                        (1 | 2, _) => return Err(wrong_type("Dimension", field)),
                        _ => {}
                    }
                }
                dims.push(dim);
            }
            (1, _) => return Err(wrong_type("TensorShapeProto", field)),
            _ => {}
        }
    }
    Ok(dims)
}

/// A protobuf field value as it appears on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Fixed32,
    Bytes(&'a [u8]),
}

/// Reads `(field number, value)` pairs of one message; never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or("malformed ONNX model: truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("malformed ONNX model: varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "malformed ONNX model: a field of {n} bytes at offset {} runs past its \
                     message ({} bytes; is the file truncated?)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3)
            .ok()
            .filter(|&f| f > 0)
            .ok_or_else(|| format!("malformed ONNX model: field number {} in a tag", tag >> 3))?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            w => {
                return Err(format!(
                    "malformed ONNX model: wire type {w} (groups are not used by ONNX) for \
                     field {field}"
                ))
            }
        };
        Ok(Some((field, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes(field: u32, b: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(field) << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    fn int(field: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3, out);
        varint(v, out);
    }
    fn value_info(name: &str, elem: i32, dims: &[Dim]) -> Vec<u8> {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d {
                Dim::Fixed(v) => int(1, *v as u64, &mut dim),
                Dim::Symbolic(s) => bytes(2, s.as_bytes(), &mut dim),
                Dim::Unknown => {}
            }
            bytes(1, &dim, &mut shape);
        }
        let mut tensor = Vec::new();
        int(1, elem as u64, &mut tensor);
        bytes(2, &shape, &mut tensor);
        let mut ty = Vec::new();
        bytes(1, &tensor, &mut ty);
        let mut vi = Vec::new();
        bytes(1, name.as_bytes(), &mut vi);
        bytes(2, &ty, &mut vi);
        vi
    }

    /// A hand-encoded model: fields the reader skips (a node, doc strings, a fixed64 and a
    /// fixed32), an initializer listed as an input (IR 3 style) and two metadata entries.
    fn model() -> Vec<u8> {
        let mut graph = Vec::new();
        bytes(1, b"\x0a\x01x", &mut graph); // a NodeProto, skipped
        let mut init = Vec::new();
        int(1, 3, &mut init);
        bytes(8, b"w", &mut init);
        bytes(9, &[0u8; 12], &mut init);
        bytes(5, &init, &mut graph);
        let batch = Dim::Symbolic("batch".into());
        bytes(
            11,
            &value_info(
                "images",
                ELEM_FLOAT,
                &[
                    batch.clone(),
                    Dim::Fixed(3),
                    Dim::Fixed(640),
                    Dim::Fixed(640),
                ],
            ),
            &mut graph,
        );
        bytes(
            11,
            &value_info("w", ELEM_FLOAT, &[Dim::Fixed(3)]),
            &mut graph,
        );
        bytes(
            12,
            &value_info(
                "output0",
                ELEM_FLOAT16,
                &[batch, Dim::Fixed(84), Dim::Unknown],
            ),
            &mut graph,
        );
        graph.extend_from_slice(&[(3 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]); // fixed64 field 3
        graph.extend_from_slice(&[(4 << 3) | 5, 1, 2, 3, 4]); // fixed32 field 4
        let mut m = Vec::new();
        int(1, 8, &mut m);
        bytes(2, b"pytorch", &mut m);
        bytes(7, &graph, &mut m);
        for (k, v) in [("names", "{0: 'person'}"), ("stride", "32")] {
            let mut e = Vec::new();
            bytes(1, k.as_bytes(), &mut e);
            bytes(2, v.as_bytes(), &mut e);
            bytes(14, &e, &mut m);
        }
        m
    }

    #[test]
    fn reads_inputs_outputs_and_metadata() {
        let s = OnnxSummary::parse(&model()).unwrap();
        assert_eq!(s.ir_version, 8);
        assert_eq!(s.inputs.len(), 1, "the initializer `w` is not a fed input");
        assert_eq!(s.inputs[0].name, "images");
        assert_eq!(s.inputs[0].elem_type, ELEM_FLOAT);
        let dims = s.inputs[0].dims.as_ref().unwrap();
        assert_eq!(dims[0], Dim::Symbolic("batch".into()));
        assert_eq!(
            dims[1..].iter().map(Dim::fixed).collect::<Vec<_>>(),
            [Some(3), Some(640), Some(640)]
        );
        assert_eq!(s.outputs[0].elem_type, ELEM_FLOAT16);
        assert_eq!(s.outputs[0].dims.as_ref().unwrap()[2], Dim::Unknown);
        assert_eq!(s.metadata("names"), Some("{0: 'person'}"));
        assert_eq!(s.metadata("stride"), Some("32"));
        assert_eq!(s.metadata("absent"), None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let m = model();
        for n in 0..m.len() {
            // Cutting inside the graph or a metadata entry must fail; cutting exactly
            // between top-level fields may parse (a shorter, still valid, message).
            if let Ok(s) = OnnxSummary::parse(&m[..n]) {
                assert!(s.inputs.len() <= 1);
            }
        }
        assert!(OnnxSummary::parse(&m[..m.len() - 1])
            .unwrap_err()
            .contains("runs past"));
    }

    #[test]
    fn rejects_non_models() {
        assert!(OnnxSummary::parse(b"").unwrap_err().contains("no graph"));
        assert!(OnnxSummary::parse(b"\x0f")
            .unwrap_err()
            .contains("wire type"));
        assert!(OnnxSummary::parse(b"\x3a\x05ab")
            .unwrap_err()
            .contains("runs past"));
        // field 7 as a varint: the graph must be a message.
        assert!(OnnxSummary::parse(b"\x38\x01")
            .unwrap_err()
            .contains("wrong wire type"));
        assert!(OnnxSummary::parse(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .unwrap_err()
        .contains("varint"));
    }
}
