//! Turning a pair of stored factor tensors into a [`LoraModule`](crate::adapter::LoraModule)'s kind and dimensions.

use std::path::Path;

use crate::adapter::LoraKind;
use crate::error::{LegoError, Result};
use crate::tensor::TensorRef;

/// The kind and sizes a factor pair implies: `(kind, rank, d_in, d_out)`.
pub fn factor_shapes(
    path: &Path,
    a_name: &str,
    a: &TensorRef,
    b_name: &str,
    b: &TensorRef,
    embedding: bool,
) -> Result<(LoraKind, usize, usize, usize)> {
    let shape_err = |tensor: &str, reason: String| LegoError::Shape {
        path: path.into(),
        tensor: tensor.into(),
        reason,
    };
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 {
        return Err(shape_err(
            a_name,
            format!("expected at least 2 dimensions [r, in, …], got {sa:?}"),
        ));
    }
    if sb.len() != sa.len() {
        return Err(shape_err(
            b_name,
            format!(
                "has {} dimensions {sb:?} but its lora_A has {} {sa:?}",
                sb.len(),
                sa.len()
            ),
        ));
    }
    let rank = sa[0];
    if rank == 0 {
        return Err(shape_err(a_name, format!("rank 0 (shape {sa:?})")));
    }
    if sb[1] != rank {
        return Err(shape_err(
            b_name,
            format!(
                "shape {sb:?} has {} rank columns but lora_A {sa:?} has rank {rank}",
                sb[1]
            ),
        ));
    }
    let d_in: usize = sa[1..].iter().product();
    let d_out = sb[0];
    let kind = if sa.len() == 2 {
        if embedding {
            LoraKind::Embedding
        } else {
            LoraKind::Linear
        }
    } else {
        if sb[2..].iter().any(|&d| d != 1) {
            return Err(shape_err(
                b_name,
                format!("convolution lora_B must have unit kernel [out, r, 1, …], got {sb:?}"),
            ));
        }
        LoraKind::Conv {
            a_tail: sa[1..].to_vec(),
            b_tail: sb[2..].to_vec(),
        }
    };
    Ok((kind, rank, d_in, d_out))
}

/// The stored shapes for a factor pair of the given kind and sizes.
pub fn stored_shapes(
    kind: &LoraKind,
    rank: usize,
    d_in: usize,
    d_out: usize,
) -> (Vec<usize>, Vec<usize>) {
    match kind {
        LoraKind::Linear | LoraKind::Embedding => (vec![rank, d_in], vec![d_out, rank]),
        LoraKind::Conv { a_tail, b_tail } => {
            let mut a = vec![rank];
            a.extend(a_tail);
            let mut b = vec![d_out, rank];
            b.extend(b_tail);
            (a, b)
        }
    }
}
