// An allocator that keeps up with plans of tens of thousands of nodes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(mab::run(std::env::args_os()));
}
