// The bundle's files, filled in by `cargo xtask widget`.
export const files = {
  js: "__PK_JS__", jsIntegrity: "__PK_JS_INTEGRITY__",
  wasm: "__PK_WASM__", wasmIntegrity: "__PK_WASM_INTEGRITY__",
  css: "__PK_CSS__", cssIntegrity: "__PK_CSS_INTEGRITY__",
};
