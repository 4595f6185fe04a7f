//! Each kernel and gradient against burn's own operations.

use burn::tensor::{Tensor, TensorData};
use rand::Rng;

use super::*;

/// Calls of the flex forward kernel (so the test knows the extension was reached).
pub(super) static FLEX_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let mut rng = crate::rng::stream(seed, "test", "conv", 0);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
    let (a, b) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * scale * 10.0, "{what}[{i}]: ours {x}, burn {y}");
    }
}

/// Forward and all three gradients against burn's own conv2d, for every shape the models use
/// (3x3 and 1x1, stride 1 and 2) and for odd sizes where a stride-2 window runs off the edge.
#[test]
fn matches_burn_conv2d_forward_and_backward() {
    let device = Device::flex().autodiff();
    let cases = [
        ([2, 3, 8, 8], 4, 3, 1),
        ([2, 3, 8, 8], 4, 3, 2),
        ([3, 2, 7, 5], 5, 3, 2),
        ([3, 2, 7, 5], 5, 3, 1),
        ([2, 4, 6, 6], 3, 1, 1),
        ([2, 4, 7, 6], 3, 1, 2),
        ([1, 1, 9, 9], 2, 5, 1),
        // Outputs 16 or more wide: at stride 1 the shifted views of the padded input (even and odd
        // sizes, a 5x5 kernel) instead of im2col; stride 2 at the same sizes.
        ([2, 3, 16, 17], 4, 3, 1),
        ([1, 2, 18, 16], 3, 5, 1),
        ([2, 3, 32, 32], 5, 3, 2),
        ([1, 2, 35, 33], 3, 3, 2),
        ([1, 2, 34, 36], 2, 5, 2),
    ];
    for (seed, (xs, o, k, stride)) in cases.into_iter().enumerate() {
        let seed = seed as u64 * 10;
        let what = format!("x {xs:?}, {o} outputs, k {k}, stride {stride}");
        let run = |ours: bool| {
            let x = random(xs, seed, &device).require_grad();
            let w = random([o, xs[1], k, k], seed + 1, &device).require_grad();
            let b = random([o], seed + 2, &device).require_grad();
            let y = if ours {
                conv_same(x.clone(), w.clone(), b.clone(), stride)
            } else {
                burn::tensor::module::conv2d(x.clone(), w.clone(), Some(b.clone()), options(k, stride))
            };
            let r = random(y.dims(), seed + 3, &device);
            let grads = (y.clone() * r).sum().backward();
            let (gx, gw, gb) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap(), b.grad(&grads).unwrap());
            (y.inner(), gx, gw, gb.reshape([1, 1, 1, o]))
        };
        let before = FLEX_CALLS.load(std::sync::atomic::Ordering::SeqCst);
        let (y1, gx1, gw1, gb1) = run(true);
        assert!(FLEX_CALLS.load(std::sync::atomic::Ordering::SeqCst) > before, "{what}: the flex kernel was not used");
        let (y2, gx2, gw2, gb2) = run(false);
        close(y1, y2, &format!("y, {what}"));
        close(gx1, gx2, &format!("dx, {what}"));
        close(gw1, gw2, &format!("dw, {what}"));
        close(gb1, gb2, &format!("db, {what}"));
    }
}

/// The fused group norm and its three gradients against the same normalisation composed of burn's
/// operations.
#[test]
fn group_norm_matches_composed_ops() {
    let device = Device::flex().autodiff();
    for (shape, groups) in [([2, 8, 5, 6], 4), ([3, 6, 4, 4], 2), ([2, 4, 3, 3], 1)] {
        let run = |ours: bool| {
            let x = random(shape, 11, &device).mul_scalar(3.0).add_scalar(0.5).require_grad();
            let gamma = random([shape[1]], 12, &device).add_scalar(1.0).require_grad();
            let beta = random([shape[1]], 13, &device).require_grad();
            let y = if ours {
                group_norm(&x, &gamma, &beta, groups, 1e-5).unwrap()
            } else {
                let [n, c, h, w] = shape;
                let g = x.clone().reshape([n, groups, (c / groups) * h * w]);
                let centred = g.clone() - g.mean_dim(2);
                let var = centred.clone().square().mean_dim(2);
                let normed = (centred / var.add_scalar(1e-5).sqrt()).reshape(shape);
                normed * gamma.clone().reshape([1, c, 1, 1]) + beta.clone().reshape([1, c, 1, 1])
            };
            let r = random(shape, 14, &device);
            let grads = (y.clone() * r).sum().backward();
            let c = shape[1];
            let (gg, gb) =
                (gamma.grad(&grads).unwrap().reshape([1, 1, 1, c]), beta.grad(&grads).unwrap().reshape([1, 1, 1, c]));
            (y.inner(), x.grad(&grads).unwrap(), gg, gb)
        };
        let ((y1, dx1, dg1, db1), (y2, dx2, dg2, db2)) = (run(true), run(false));
        let what = format!("{shape:?} in {groups} groups");
        close(y1, y2, &format!("y, {what}"));
        close(dx1, dx2, &format!("dx, {what}"));
        close(dg1, dg2, &format!("dgamma, {what}"));
        close(db1, db2, &format!("dbeta, {what}"));
    }
}

/// The fused group norm and (leaky) ReLU, with and without a residual added between them: bit for bit
/// the kernels one after the other, on plain flex (the fused kernel) and on autodiff (the nodes), with the
/// same gradients.
#[test]
fn group_norm_act_is_group_norm_then_leaky_relu() {
    let bits =
        |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for device in [Device::flex(), Device::flex().autodiff()] {
        for (shape, groups, slope) in [([2, 8, 5, 6], 4, 0.0), ([3, 6, 4, 4], 2, 0.2), ([2, 4, 3, 3], 1, 0.2)] {
            let x = random(shape, 21, &device).mul_scalar(3.0).add_scalar(0.5);
            let gamma = random([shape[1]], 22, &device).add_scalar(1.0);
            let beta = random([shape[1]], 23, &device);
            let fused = group_norm_act(&x, &gamma, &beta, groups, 1e-5, slope).unwrap();
            let apart = leaky_relu(group_norm(&x, &gamma, &beta, groups, 1e-5).unwrap(), slope);
            assert_eq!(bits(fused), bits(apart), "{shape:?}, {groups} groups, slope {slope}");
            let skip = random(shape, 28, &device);
            let fused = group_norm_add_act(&x, &gamma, &beta, &skip, groups, 1e-5, slope).unwrap();
            let apart = leaky_relu(group_norm(&x, &gamma, &beta, groups, 1e-5).unwrap() + skip, slope);
            assert_eq!(bits(fused), bits(apart), "with a residual: {shape:?}, {groups} groups, slope {slope}");
        }
    }
    let device = Device::flex().autodiff();
    let x = random([2, 8, 5, 6], 24, &device).require_grad();
    let gamma = random([8], 25, &device).add_scalar(1.0).require_grad();
    let beta = random([8], 26, &device).require_grad();
    let r = random([2, 8, 5, 6], 27, &device);
    let skip = random([2, 8, 5, 6], 29, &device).require_grad();
    // The gradients of x, gamma, beta and the residual, as the bits of each.
    let grads = |y: Tensor<4>| {
        let g = (y * r.clone()).sum().backward();
        let vector = |t: Option<Tensor<1>>| t.unwrap().reshape([1, 1, 1, 8]);
        let skip = skip.grad(&g).map(|t| bits(t)).unwrap_or_default();
        (bits(x.grad(&g).unwrap()), bits(vector(gamma.grad(&g))), bits(vector(beta.grad(&g))), skip)
    };
    // The fused nodes take the activation's gradient from the output's sign: both slopes the models use.
    for slope in [0.0, 0.2] {
        let fused = grads(group_norm_act(&x, &gamma, &beta, 4, 1e-5, slope).unwrap());
        let apart = grads(leaky_relu(group_norm(&x, &gamma, &beta, 4, 1e-5).unwrap(), slope));
        assert_eq!(fused, apart, "slope {slope}");
        let fused = grads(group_norm_add_act(&x, &gamma, &beta, &skip, 4, 1e-5, slope).unwrap());
        let apart = grads(leaky_relu(group_norm(&x, &gamma, &beta, 4, 1e-5).unwrap() + skip.clone(), slope));
        assert!(!fused.3.is_empty(), "the residual got no gradient");
        assert_eq!(fused, apart, "with a residual, slope {slope}");
    }
}

/// Average pooling and its gradient against burn's `avg_pool2d` (padding not counted), bit for bit, for the two
/// poolings the models use and odd sizes where windows run off the edge or a row is left over.
#[test]
fn avg_pool_matches_burn() {
    use burn::tensor::ops::AvgPoolOptions;
    let device = Device::flex().autodiff();
    for (shape, k, stride, pad) in
        [([2, 3, 8, 8], 3, 1, 1), ([2, 2, 8, 8], 2, 2, 0), ([1, 2, 7, 5], 2, 2, 0), ([2, 1, 5, 7], 3, 2, 1)]
    {
        let run = |ours: bool| {
            let x = random(shape, 21, &device).require_grad();
            let y = if ours {
                avg_pool(x.clone(), k, stride, pad)
            } else {
                let options = AvgPoolOptions::new([k, k])
                    .with_stride([stride, stride])
                    .with_padding([pad, pad])
                    .with_count_include_pad(false);
                burn::tensor::module::avg_pool2d(x.clone(), options)
            };
            let r = random(y.dims(), 22, &device);
            let grads = (y.clone() * r).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        let what = format!("{shape:?}, k {k}, stride {stride}, pad {pad}");
        // Bit for bit: the same arithmetic in the same order (see pool.rs for why it must be).
        let bits =
            |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(y1), bits(y2), "y, {what}");
        assert_eq!(bits(g1), bits(g2), "dx, {what}");
    }
}

/// The (leaky) ReLU and its gradient against burn's own, for slopes 0 (the ReLU) and 0.2.
#[test]
fn leaky_relu_matches_burn() {
    let device = Device::flex().autodiff();
    for slope in [0.0f32, 0.2] {
        let run = |ours: bool| {
            let x = random([2, 3, 5, 7], 7, &device).require_grad();
            let y = if ours {
                leaky_relu(x.clone(), slope)
            } else if slope == 0.0 {
                burn::tensor::activation::relu(x.clone())
            } else {
                burn::tensor::activation::leaky_relu(x.clone(), slope as f64)
            };
            let r = random(y.dims(), 8, &device);
            let grads = (y.clone() * r).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y1, g1), (y2, g2)) = (run(true), run(false));
        close(y1, y2, &format!("y, slope {slope}"));
        close(g1, g2, &format!("dx, slope {slope}"));
    }
}

/// Times the flex convolution kernels on one thread at the models' shapes (batch 32):
/// `cargo test --release -p mammogan -p mammo-nn --lib -- --ignored --nocapture conv_kernel_timings`.
#[test]
#[ignore]
fn conv_kernel_timings() {
    let shapes: [([usize; 4], usize, usize, usize); 9] = [
        ([32, 1, 64, 64], 8, 3, 1),
        ([32, 8, 64, 64], 16, 3, 2),
        ([32, 16, 32, 32], 16, 3, 1),
        ([32, 8, 64, 64], 16, 1, 2),
        ([32, 16, 32, 32], 32, 3, 2),
        ([32, 32, 16, 16], 32, 3, 1),
        ([32, 64, 8, 8], 64, 3, 1),
        ([32, 8, 64, 64], 8, 3, 1),
        ([32, 16, 32, 32], 8, 1, 1),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let data =
        |n: usize, seed: u32| -> Vec<f32> { (0..n).map(|i| ((i as u32 ^ seed) % 97) as f32 / 97.0 - 0.5).collect() };
    let mut total = [0f64; 3];
    for (xs, o, k, stride) in shapes {
        let ws = [o, xs[1], k, k];
        let x = tensor(data(xs.iter().product(), 1), xs);
        let w = tensor(data(ws.iter().product(), 2), ws);
        let b = tensor(data(o, 3), [o]);
        let y = <Flex as Kernels>::conv_same(x.clone(), w.clone(), b.clone(), stride);
        let ys = y.shape();
        let dy = tensor(data(ys.iter().product(), 4), [ys[0], ys[1], ys[2], ys[3]]);
        let time = |f: &(dyn Fn() + Sync)| {
            pool.install(|| {
                (0..15)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        f();
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .fold(f64::INFINITY, f64::min)
            })
        };
        let f = time(&|| drop(<Flex as Kernels>::conv_same(x.clone(), w.clone(), b.clone(), stride)));
        let gx = time(&|| drop(<Flex as Kernels>::conv_same_x_grad(x.clone(), w.clone(), dy.clone(), stride)));
        let gw = time(&|| drop(<Flex as Kernels>::conv_same_w_grad(x.clone(), w.clone(), dy.clone(), stride)));
        total = [total[0] + f, total[1] + gx, total[2] + gw];
        println!("x {xs:?} o {o} k {k} s {stride}: forward {f:.2} ms, dx {gx:.2} ms, dw {gw:.2} ms");
    }
    println!("total: forward {:.2} ms, dx {:.2} ms, dw {:.2} ms", total[0], total[1], total[2]);
}
