//! Message bus throughput (filled in once picoclaw-bus lands).

fn main() {
    divan::main();
}
