package dev.vlm4j.train;

import dev.vlm4j.tensor.Tensor;

import java.util.*;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Which weights LoRA adapts and which full fine-tuning trains, with ms-swift's rules.
 * <ul>
 *   <li>{@code all-linear}: every linear layer of the parts that are not frozen ({@code --freeze_vit}: the vision
 *       blocks, {@code --freeze_aligner}: the merger/projector, {@code --freeze_llm}: the language model); never
 *       {@code lm_head} or the embeddings.</li>
 *   <li>a list of names: PEFT's rule, a module matches when its name equals an entry or ends with {@code .entry}
 *       (anywhere in the model, whatever the freeze flags).</li>
 *   <li>one regular expression (an entry with regex characters): {@code re.fullmatch} against the module name, in
 *       either naming scheme ({@code model.layers.N...} / {@code model.language_model.layers.N...},
 *       {@code visual...} / {@code model.visual...}).</li>
 * </ul>
 */
public final class LoraTargets {
    private static final Pattern REGEX_CHARS = Pattern.compile("[\\\\^$*+?()\\[\\]{}|]");

    private LoraTargets() {}

    /** The part of the model a canonical weight name belongs to: {@code vit}, {@code aligner} or {@code llm}. */
    public static String part(String name) {
        if (name.startsWith("visual.merger.")) return "aligner";
        if (name.startsWith("visual.")) return "vit";
        return "llm";
    }

    /** Whether the freeze flags leave a part trainable. */
    public static boolean trainable(String name, SftArgs a) {
        return switch (part(name)) {
            case "vit" -> !a.freezeVit;
            case "aligner" -> !a.freezeAligner;
            default -> !a.freezeLlm;
        };
    }

    /** The transformers 5 spelling of a canonical name ({@code model.language_model.*}, {@code model.visual.*}). */
    public static String newStyleName(String canonical) {
        if (canonical.startsWith("model.")) return "model.language_model." + canonical.substring("model.".length());
        if (canonical.startsWith("visual.")) return "model." + canonical;
        return canonical;
    }

    private static boolean isLinear(String name, Tensor t) {
        return name.endsWith(".weight") && t.rank() == 2 && !name.contains("embed_tokens") && !name.equals("lm_head.weight")
                && !name.contains("norm") && !name.contains("patch_embed"); // patch_embed is a Conv3d in transformers
    }

    /** Whether the {@code --target_modules} value is one regular expression. */
    public static boolean isRegex(List<String> targetModules) {
        return targetModules.size() == 1 && !targetModules.get(0).equals("all-linear") && REGEX_CHARS.matcher(targetModules.get(0)).find();
    }

    /** The option's one regular expression, compiled (null when it is a list of names); a bad one names the option. */
    private static Pattern regex(String option, List<String> values) {
        if (!isRegex(values)) return null;
        try {
            return Pattern.compile(values.get(0));
        } catch (PatternSyntaxException e) {
            throw new IllegalArgumentException(option + " " + values.get(0) + " is not a valid regular expression: " + e.getDescription());
        }
    }

    /** The canonical weight names ({@code ....weight}) LoRA adapts, in model order; fails when none is selected. */
    public static List<String> select(Map<String, Tensor> params, SftArgs a) {
        List<String> tm = a.targetModules;
        boolean allLinear = tm.contains("all-linear");
        Pattern re = regex("--target_modules", tm);
        List<String> ex = a.excludeModules == null ? List.of() : a.excludeModules;
        Pattern exRe = regex("--exclude_modules", ex);
        List<String> out = new ArrayList<>();
        int excluded = 0;
        for (var e : params.entrySet()) {
            String name = e.getKey();
            if (!name.endsWith(".weight") || e.getValue().rank() != 2 || name.contains("embed_tokens")) continue;
            String module = name.substring(0, name.length() - ".weight".length());
            boolean hit;
            if (re != null) hit = re.matcher(module).matches() || re.matcher(newStyleName(module)).matches();
            else {
                hit = allLinear && isLinear(name, e.getValue()) && trainable(name, a);
                for (String t : tm) if (!t.equals("all-linear") && (module.equals(t) || module.endsWith("." + t))) hit = true;
            }
            if (hit && matches(module, ex, exRe)) {
                excluded++;
                continue;
            }
            if (hit) out.add(name);
        }
        if (out.isEmpty())
            throw new IllegalArgumentException("--target_modules " + tm + " selects no linear layer (freeze_vit " + a.freezeVit
                    + ", freeze_aligner " + a.freezeAligner + ", freeze_llm " + a.freezeLlm
                    + (excluded > 0 ? ", " + excluded + " excluded by --exclude_modules " + ex : "") + ")");
        if (!ex.isEmpty() && excluded == 0)
            throw new IllegalArgumentException("--exclude_modules " + ex + " excludes none of the " + out.size() + " modules --target_modules selects");
        return out;
    }

    /** PEFT's module rule in either naming scheme: one regex (fullmatch), else equal to an entry or ending with {@code .entry}. */
    private static boolean matches(String module, List<String> entries, Pattern re) {
        if (entries.isEmpty()) return false;
        String alt = newStyleName(module);
        if (re != null) return re.matcher(module).matches() || re.matcher(alt).matches();
        for (String t : entries) if (module.equals(t) || module.endsWith("." + t) || alt.equals(t) || alt.endsWith("." + t)) return true;
        return false;
    }

    /** The adapter_config.json {@code exclude_modules}: null, the regex, or the list, as given. */
    public static Object excludeConfigValue(SftArgs a) {
        if (a.excludeModules == null || a.excludeModules.isEmpty()) return null;
        return isRegex(a.excludeModules) ? a.excludeModules.get(0) : new ArrayList<>(a.excludeModules);
    }

    /**
     * Whether a canonical tensor name ({@code <module>.weight}/{@code .bias}) belongs to a module that
     * {@code --modules_to_save} names: PEFT's rule, the module name (in either naming scheme) equals an entry or ends
     * with {@code .entry}.
     */
    public static boolean isModuleToSave(String tensorName, List<String> entries) {
        int dot = tensorName.lastIndexOf('.');
        if (dot < 0 || entries == null) return false;
        String module = tensorName.substring(0, dot), alt = newStyleName(module);
        for (String e : entries)
            if (module.equals(e) || module.endsWith("." + e) || alt.equals(e) || alt.endsWith("." + e)) return true;
        return false;
    }

    /** The canonical tensor names {@code --modules_to_save} selects, in checkpoint order; fails on an entry matching nothing. */
    public static List<String> modulesToSave(Collection<String> tensorNames, List<String> entries) {
        List<String> out = new ArrayList<>();
        for (String n : tensorNames) if (isModuleToSave(n, entries)) out.add(n);
        for (String e : entries)
            if (out.stream().noneMatch(n -> isModuleToSave(n, List.of(e))))
                throw new IllegalArgumentException("--modules_to_save " + e + " matches no module of the model");
        return out;
    }

    /** The weights full fine-tuning trains: every weight of the parts the freeze flags leave trainable. */
    public static List<String> fullTrainable(Map<String, Tensor> params, SftArgs a) {
        List<String> out = new ArrayList<>();
        for (String n : params.keySet()) if (trainable(n, a)) out.add(n);
        if (out.isEmpty()) throw new IllegalArgumentException("every part is frozen: nothing to train");
        return out;
    }

    /**
     * The adapter_config.json {@code target_modules}: the user's list or regex as given; for {@code all-linear} a
     * regex matching exactly the selected modules in both naming schemes (ms-swift writes a regex too, because a
     * list of leaf names would also match the frozen vision blocks).
     */
    public static Object adapterConfigValue(List<String> selectedWeights, SftArgs a) {
        if (isRegex(a.targetModules)) return a.targetModules.get(0);
        if (!a.targetModules.contains("all-linear")) return new ArrayList<>(a.targetModules);
        Set<String> alts = new LinkedHashSet<>();
        for (String w : selectedWeights) {
            String m = w.substring(0, w.length() - ".weight".length()).replaceAll("\\.\\d+\\.", ".#.");
            String esc = m.replace(".", "\\.").replace("#", "\\d+");
            if (m.startsWith("model.")) esc = "model\\.(language_model\\.)?" + esc.substring("model\\.".length());
            else if (m.startsWith("visual.")) esc = "(model\\.)?" + esc;
            alts.add(esc);
        }
        return "^(" + String.join("|", alts) + ")$";
    }
}
