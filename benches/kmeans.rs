//! k-means and PCA on bench-set modules: the Gram-only k-means (the product's route), the
//! embedding route (eigensolve + k-means on Y, the route before it), linfa-clustering's
//! KMeans on Y, and the scatter's PCA against linfa-reduction's Pca; time, inertia, and
//! whether each is bit-identical with 1 and 2 threads. `cargo bench --bench kmeans`

#[path = "common.rs"]
mod common;

use linfa::traits::{Fit, Predict};
use linfa::{DatasetBase, ParamGuard};
use lora_lego::gram::embed;
use lora_lego::kmeans::GramKMeans;
use lora_lego::kmeans_gram::{fit_gram, partition_inertia};
use lora_lego::scatter::PcaBasis;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const K: usize = 16;

fn linfa_kmeans(y: &Array2<f64>, seed: u64) -> Vec<usize> {
    let ds = DatasetBase::from(y.clone());
    let model =
        linfa_clustering::KMeans::params_with_rng(K, Xoshiro256PlusPlus::seed_from_u64(seed))
            .n_runs(10)
            .tolerance(1e-6)
            .max_n_iterations(300)
            .fit(&ds)
            .expect("linfa fits");
    let labels: Array1<usize> = model.predict(y);
    labels.to_vec()
}

fn main() {
    println!(
        "threads: {}, k = {K}, 10 restarts",
        rayon::current_num_threads()
    );
    for adapters in [8, 100] {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = common::engine(adapters, dir.path());
        let grams = common::grams(&engine);
        let take = if adapters >= 100 { 2 } else { grams.len() };
        let reps = if adapters >= 100 { 1 } else { 3 };
        let (mut t_gram, mut t_embed, mut t_linfa, mut t_pca, mut t_lpca) =
            (0.0, 0.0, 0.0, 0.0, 0.0);
        let (mut i_gram, mut i_embed, mut i_linfa) = (0.0, 0.0, 0.0);
        let (mut det_gram, mut det_linfa) = (true, true);
        for (_, g) in grams.iter().take(take) {
            let n = g.nrows();
            let ones = vec![1.0; n];
            for seed in [42u64, 7, 2024] {
                let params = GramKMeans::params(K).seed(seed).check().expect("params");
                let (ms, p) = common::time(reps, || fit_gram(g.view(), &params).expect("gram"));
                t_gram += ms;
                i_gram += p.inertia;
                let (ms, m) = common::time(reps, || {
                    let y = embed(g.view()).expect("embed").y;
                    params.fit_embedding(y.view()).expect("embedding")
                });
                t_embed += ms;
                i_embed += m.inertia;
                let y = embed(g.view()).expect("embed").y;
                let (ms, labels) = common::time(reps, || linfa_kmeans(&y, seed));
                t_linfa += ms;
                i_linfa += partition_inertia(g.view(), &labels, &ones, K);
                if seed == 42 {
                    let one = common::pool(1).install(|| fit_gram(g.view(), &params).expect("1"));
                    let two = common::pool(2).install(|| fit_gram(g.view(), &params).expect("2"));
                    det_gram &= one == two;
                    let one = common::pool(1).install(|| linfa_kmeans(&y, seed));
                    let two = common::pool(2).install(|| linfa_kmeans(&y, seed));
                    det_linfa &= one == two;
                    t_pca += common::time(reps, || PcaBasis::from_gram(g.view()).expect("pca")).0;
                    t_lpca += common::time(reps, || {
                        linfa_reduction::Pca::params(2)
                            .fit(&DatasetBase::from(y.clone()))
                            .map(|p| p.explained_variance())
                    })
                    .0;
                }
            }
        }
        println!(
            "{adapters} × r16, {take} modules × 3 seeds (n = {}):",
            grams[0].1.nrows()
        );
        println!("  Gram-only k-means     {t_gram:9.1} ms  inertia {i_gram:.6e}  threads-identical {det_gram}");
        println!(
            "  eigensolve + k-means  {t_embed:9.1} ms  inertia {i_embed:.6e}  (Gram/embedding inertia {:+.3}%)",
            100.0 * (i_gram / i_embed - 1.0)
        );
        println!(
            "  linfa KMeans on Y     {t_linfa:9.1} ms  inertia {i_linfa:.6e}  threads-identical {det_linfa}  (time vs Gram-only {:.2}×, embedding not included)",
            t_linfa / t_gram
        );
        println!(
            "  scatter PCA: PcaBasis::from_gram {t_pca:.1} ms, linfa Pca on Y {t_lpca:.1} ms ({:.2}×, embedding not included)",
            t_lpca / t_pca
        );
    }
}
