package dev.vlm4j.tensor;

/** Where a tensor's memory lives: the CPU, or a numbered accelerator of some kind ("cuda:0"). */
public record Device(String kind, int index) {
    public static final Device CPU = new Device("cpu", 0);

    /** Parses "cpu", "cuda" or "cuda:N". */
    public static Device parse(String s) {
        String t = s.trim().toLowerCase();
        if (t.equals("cpu")) return CPU;
        int colon = t.indexOf(':');
        String kind = colon < 0 ? t : t.substring(0, colon);
        if (!kind.equals("cuda")) throw new IllegalArgumentException("unknown device '" + s + "' (use cpu, cuda or cuda:N)");
        int idx = 0;
        if (colon >= 0) {
            try { idx = Integer.parseInt(t.substring(colon + 1)); }
            catch (NumberFormatException e) { throw new IllegalArgumentException("bad device index in '" + s + "'"); }
        }
        return new Device(kind, idx);
    }

    public boolean isCpu() { return kind.equals("cpu"); }

    @Override public String toString() { return isCpu() ? "cpu" : kind + ":" + index; }
}
