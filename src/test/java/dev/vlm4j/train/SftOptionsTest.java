package dev.vlm4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import dev.vlm4j.cli.Main;
import dev.vlm4j.cli.SftCommand;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Target selection with the freeze flags, target_modules forms, rslora, PEFT's adapter_config.json, evaluation on a
 * split, and help text for every sft option.
 */
class SftOptionsTest {
    @TempDir Path tmp;

    private static Map<String, Tensor> params() {
        try (Checkpoint c = Checkpoint.open(Fixtures.tinyModel())) {
            Map<String, Tensor> m = new LinkedHashMap<>();
            for (String n : c.names()) m.put(n, c.get(n));
            return m;
        }
    }

    private static long count(List<String> names, String part) {
        return names.stream().filter(n -> LoraTargets.part(n).equals(part)).count();
    }

    @Test
    void allLinearSkipsFrozenPartsAndOtherFormsFollowPeft() {
        Map<String, Tensor> p = params();
        SftArgs a = new SftArgs();
        List<String> def = LoraTargets.select(p, a);
        assertEquals(14, def.size(), "all-linear with freeze_vit/aligner: 2 LM layers x 7 linears, got " + def);
        assertEquals(0, count(def, "vit") + count(def, "aligner"), "no vision module by default");
        assertFalse(def.contains("lm_head.weight"), "lm_head is never all-linear");
        a.freezeVit = false;
        a.freezeAligner = false;
        List<String> all = LoraTargets.select(p, a);
        assertEquals(4 * 5, count(all, "vit"), "4 ViT blocks x (qkv, proj, gate, up, down)");
        assertEquals(2, count(all, "aligner"), "merger mlp.0 and mlp.2");
        a.freezeLlm = true;
        assertEquals(0, count(LoraTargets.select(p, a), "llm"), "freeze_llm leaves the LM out");
        SftArgs s = new SftArgs();
        s.targetModules = List.of("q_proj", "gate_proj");
        List<String> suff = LoraTargets.select(p, s);
        assertEquals(2 + 2 + 4, suff.size(), "suffix names match anywhere (LM q_proj x2, LM gate_proj x2, ViT gate_proj x4): " + suff);
        SftArgs r = new SftArgs();
        r.targetModules = List.of("model\\.language_model\\.layers\\.0\\.self_attn\\.(q|v)_proj");
        assertEquals(List.of("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"), LoraTargets.select(p, r),
                "a regex is fullmatched against the module name in either naming scheme");
        String re = (String) LoraTargets.adapterConfigValue(all, a);
        for (String n : all) {
            String m = n.substring(0, n.length() - 7);
            assertTrue(m.matches(re) && LoraTargets.newStyleName(m).matches(re), "adapter_config regex " + re + " misses " + m);
        }
        assertFalse("visual.blocks.0.norm1".matches(re), "regex matches a non-target");
    }

    @Test
    void excludeModulesFollowsPeft() {
        Map<String, Tensor> p = params();
        SftArgs a = new SftArgs();
        a.excludeModules = List.of("down_proj", "model.layers.1.self_attn.q_proj");
        List<String> sel = LoraTargets.select(p, a);
        assertEquals(14 - 2 - 1, sel.size(), "all-linear minus both down_proj and layer 1's q_proj: " + sel);
        assertTrue(sel.stream().noneMatch(n -> n.contains("down_proj")), sel.toString());
        assertFalse(sel.contains("model.layers.1.self_attn.q_proj.weight"));
        assertTrue(sel.contains("model.layers.0.self_attn.q_proj.weight"));
        assertEquals(List.of("down_proj", "model.layers.1.self_attn.q_proj"), LoraTargets.excludeConfigValue(a));
        String re = (String) LoraTargets.adapterConfigValue(sel, a);
        assertFalse("model.layers.0.mlp.down_proj".matches(re), "the adapter_config regex leaves the excluded modules out");

        SftArgs r = new SftArgs();
        r.excludeModules = List.of("model\\.language_model\\.layers\\.\\d+\\.mlp\\..*");   // one regex, new-style names
        List<String> attn = LoraTargets.select(p, r);
        assertEquals(2 * 4, attn.size(), "only attention projections are left: " + attn);
        assertEquals(r.excludeModules.get(0), LoraTargets.excludeConfigValue(r));

        SftArgs none = new SftArgs();
        none.excludeModules = List.of("no_such_proj");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LoraTargets.select(p, none));
        assertTrue(e.getMessage().contains("excludes none"), e.getMessage());
        SftArgs all = new SftArgs();
        all.excludeModules = List.of(".*_proj");
        e = assertThrows(IllegalArgumentException.class, () -> LoraTargets.select(p, all), "nothing left to adapt");
        assertTrue(e.getMessage().contains("14 excluded by --exclude_modules"), e.getMessage());
    }

    @Test
    void sftCliWithSplitEvalFreezeFlagsAndRslora() throws Exception {
        Path ds = SftResumeTest.threeSamples(tmp);
        Path image = Fixtures.cases().resolve("lora/image0.png");
        Files.writeString(ds, Files.readString(ds) + "\n{\"messages\":[{\"role\":\"user\",\"content\":\"<image>What is this?\"},"
                + "{\"role\":\"assistant\",\"content\":\"A gradient.\"}],\"images\":[\"" + image.toString().replace("\\", "\\\\") + "\"]}\n");
        Path out = tmp.resolve("o");
        int rc = Main.run("sft", "--model", Fixtures.tinyModel().toString(), "--dataset", ds.toString(), "--split_dataset_ratio", "0.25",
                "--freeze_vit", "false", "--freeze_aligner", "false", "--use_rslora", "true", "--lora_rank", "4", "--lora_alpha", "8",
                "--lora_dropout", "0.1", "--max_steps", "2", "--save_steps", "2", "--eval_steps", "1", "--logging_steps", "1",
                "--learning_rate", "1e-3", "--gradient_checkpointing", "false", "--output_dir", out.toString());
        assertEquals(0, rc, "vlm4j sft exit code");
        Path run;
        try (var s = Files.list(out)) { run = s.findFirst().orElseThrow(); }
        List<Map<String, Object>> log = TrainerState.readLog(run.resolve("logging.jsonl"));
        long evals = log.stream().filter(r -> r.containsKey("eval_loss")).count();
        assertEquals(2, evals, "eval_loss rows (eval_steps 1, 2 steps): " + log);
        JsonNode st = new ObjectMapper().readTree(run.resolve("checkpoint-2/trainer_state.json").toFile());
        double lastEval = ((Number) log.stream().filter(r -> r.containsKey("eval_loss")).reduce((x, y) -> y).orElseThrow().get("eval_loss")).doubleValue();
        assertEquals(lastEval, st.get("best_metric").asDouble(), 1e-6, "with evaluation, the best metric is the eval loss");
        assertTrue(Files.isRegularFile(run.resolve("images/eval_loss.png")) && Files.isRegularFile(run.resolve("images/train_loss.png")), "loss plots");
        JsonNode ac = new ObjectMapper().readTree(run.resolve("checkpoint-2/adapter_config.json").toFile());
        assertEquals("LORA", ac.get("peft_type").asText());
        assertEquals("CAUSAL_LM", ac.get("task_type").asText());
        assertEquals(4, ac.get("r").asInt());
        assertEquals(8.0, ac.get("lora_alpha").asDouble());
        assertEquals(0.1, ac.get("lora_dropout").asDouble(), 1e-12);
        assertTrue(ac.get("use_rslora").asBoolean(), "use_rslora");
        assertEquals("none", ac.get("bias").asText());
        assertTrue(ac.has("modules_to_save") && ac.get("modules_to_save").isNull(), "modules_to_save null");
        assertTrue(ac.get("base_model_name_or_path").asText().endsWith("tiny-qwen2_5-vl"), ac.toString());
        assertTrue(ac.get("target_modules").isTextual(), "all-linear is saved as a regex");
        LoraAdapter a = LoraAdapter.load(run.resolve("checkpoint-2"));
        assertEquals(14 + 20 + 2, a.pairs().size(), "LM + ViT + merger pairs");
        assertEquals(8 / Math.sqrt(4), a.scale(), 1e-12, "rslora scale alpha / sqrt(r)");
        SftArgs back = SftArgs.read(run.resolve("args.json"));
        assertEquals(0.25, back.splitDatasetRatio);
        assertFalse(back.freezeVit, "args.json round trip of freeze_vit");
        assertFalse(back.gradientCheckpointing, "args.json round trip of gradient_checkpointing");
        assertTrue(new SftArgs().gradientCheckpointing, "gradient_checkpointing defaults to true, as in ms-swift");
        assertEquals(List.of(ds.toString()), back.dataset);
    }

    @Test
    void everySftOptionHasHelp() {
        CommandLine cl = new CommandLine(new SftCommand());
        List<String> bare = new ArrayList<>();
        for (var o : cl.getCommandSpec().options())
            if (o.description().length == 0 || o.description()[0].isBlank()) bare.add(o.longestName());
        assertTrue(bare.isEmpty(), "sft options without a description: " + bare);
        String help = cl.getUsageMessage();
        assertTrue(help.contains("--truncation_strategy") && help.contains("default: delete"), help);
        assertTrue(help.contains("--gradient_checkpointing") && help.contains("default: true, as ms-swift"), help);
    }
}
