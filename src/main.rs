fn main() {
    std::process::exit(mab::run(std::env::args_os()));
}
