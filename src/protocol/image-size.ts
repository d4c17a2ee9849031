// The size the dashboard shows for an image: its config plus its layers, as its manifest
// lists them. An index (or manifest list) has none of its own: its size is per platform.

/** Config plus layer sizes of an image manifest; null for an index or a body that is not one. */
export function imageSize(body: Uint8Array): number | null {
  try {
    const m = JSON.parse(new TextDecoder().decode(body)) as { config?: { size?: number }; layers?: { size?: number }[] };
    if (!Array.isArray(m.layers)) return null;
    return (m.config?.size ?? 0) + m.layers.reduce((sum, l) => sum + (l.size ?? 0), 0);
  } catch {
    return null;
  }
}
