package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.preprocess.template.ChatTemplate;
import dev.vlm4j.preprocess.template.TemplateException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j template}: renders a model's chat template for every row of a JSONL file. Each row holds
 * {@code inputs} (messages and keyword arguments, as in {@code chat_template_cases.jsonl}); it is written back with
 * all its fields, in order, plus {@code rendered} (the text) or {@code error} (the failure message).
 */
@Command(name = "template", mixinStandardHelpOptions = true,
        description = "Render a chat template for each JSONL row's \"inputs\" (messages + keyword arguments).")
public final class TemplateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--model", paramLabel = "DIR",
            description = "Model folder (chat_template.jinja / chat_template.json / tokenizer_config.json).")
    Path model;

    @Option(names = "--template", paramLabel = "FILE",
            description = "Template file overriding the model's: a .jinja file, or a .json with \"chat_template\".")
    Path template;

    @Option(names = "--jsonl", required = true, paramLabel = "IN", description = "Input rows (JSON lines with \"inputs\").")
    Path in;

    @Option(names = "--out", required = true, paramLabel = "OUT", description = "Output JSONL file.")
    Path out;

    @Override
    public Integer call() throws Exception {
        if (model == null && template == null) throw new IllegalArgumentException("give --model DIR or --template FILE");
        ChatTemplate tpl;
        if (template != null) {
            tpl = ChatTemplate.fromFile(template);
            if (model != null) tpl = tpl.withVariables(ChatTemplate.specialTokens(model));
        } else {
            tpl = ChatTemplate.load(model);
        }
        ObjectMapper json = new ObjectMapper();
        List<String> lines = Files.readAllLines(in, StandardCharsets.UTF_8);
        int rendered = 0, errors = 0, lineNo = 0;
        if (out.toAbsolutePath().getParent() != null) Files.createDirectories(out.toAbsolutePath().getParent());
        try (BufferedWriter w = Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
            for (String line : lines) {
                lineNo++;
                if (line.isBlank()) continue;
                JsonNode node = json.readTree(line);
                if (!(node instanceof ObjectNode row) || !row.path("inputs").isObject()) {
                    throw new IllegalArgumentException(in + ":" + lineNo + ": expected an object with an \"inputs\" object");
                }
                row.remove("rendered");
                row.remove("error");
                try {
                    row.put("rendered", tpl.render(row.get("inputs")));
                    rendered++;
                } catch (TemplateException e) {
                    row.put("error", e.getMessage());
                    errors++;
                }
                w.write(json.writeValueAsString(row));
                w.write('\n');
            }
        }
        spec.commandLine().getOut().println("template: " + (rendered + errors) + " rows, " + rendered + " rendered, "
                + errors + " errors -> " + out);
        return 0;
    }
}
