package dev.vlm4j.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.preprocess.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j tokenize}: encodes the {@code text} of every row of a JSON Lines file with a model's tokenizer and
 * writes the rows back, in order and with all their fields, plus {@code ids} (the token ids, no special tokens
 * added) and {@code decoded} (those ids decoded again). Blank lines are skipped. The output file is written
 * only when every row succeeded.
 */
@Command(name = "tokenize", mixinStandardHelpOptions = true,
        description = {"Tokenize the \"text\" of each JSON Lines row with a model's tokenizer.json.",
                "Each row is written out with \"ids\" and \"decoded\" added; other fields and row order are kept."})
public final class TokenizeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "Model folder containing tokenizer.json.")
    Path model;

    @Option(names = "--jsonl", required = true, paramLabel = "IN",
            description = "Input JSON Lines file; each row is an object with a string field \"text\".")
    Path input;

    @Option(names = "--out", required = true, paramLabel = "OUT",
            description = "Output JSON Lines file (replaced if it exists).")
    Path output;

    @Option(names = "--skip-special-tokens",
            description = "Leave special tokens such as <|im_end|> out of \"decoded\".")
    boolean skipSpecial;

    @Override
    public Integer call() throws IOException {
        if (!Files.isRegularFile(input)) throw new IllegalArgumentException("input file not found: " + input);
        ObjectMapper mapper = new ObjectMapper();
        Path parent = output.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Path tmp = Files.createTempFile(parent, "." + output.getFileName(), ".tmp");
        try (Tokenizer tokenizer = Tokenizer.load(model)) {
            int rows = tokenizeRows(tokenizer, mapper, tmp);
            try {
                Files.move(tmp, output, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, output, StandardCopyOption.REPLACE_EXISTING);
            }
            System.err.println("vlm4j tokenize: " + rows + " rows -> " + output);
            return 0;
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private int tokenizeRows(Tokenizer tokenizer, ObjectMapper mapper, Path tmp) throws IOException {
        int rows = 0;
        int lineNo = 0;
        try (BufferedReader in = Files.newBufferedReader(input, StandardCharsets.UTF_8);
             BufferedWriter out = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            String line;
            while ((line = readLine(in, lineNo + 1)) != null) {
                lineNo++;
                if (line.isBlank()) continue;
                ObjectNode row = parseRow(mapper, line, lineNo);
                int[] ids = tokenizer.encode(row.get("text").textValue());
                ArrayNode idArray = row.putArray("ids");
                for (int id : ids) idArray.add(id);
                row.put("decoded", tokenizer.decode(ids, skipSpecial));
                out.write(mapper.writeValueAsString(row));
                out.write('\n');
                rows++;
            }
        }
        return rows;
    }

    private String readLine(BufferedReader in, int lineNo) throws IOException {
        try {
            return in.readLine();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException(input + ":" + lineNo + ": not valid UTF-8 text");
        }
    }

    private ObjectNode parseRow(ObjectMapper mapper, String line, int lineNo) {
        JsonNode node;
        try {
            node = mapper.readTree(line);
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException(input + ":" + lineNo + ": not valid JSON: " + e.getOriginalMessage());
        }
        if (!(node instanceof ObjectNode row)) {
            throw new IllegalArgumentException(input + ":" + lineNo + ": expected a JSON object like {\"text\": \"...\"}");
        }
        JsonNode text = row.get("text");
        if (text == null || !text.isTextual()) {
            throw new IllegalArgumentException(input + ":" + lineNo + ": "
                    + (text == null ? "missing" : "non-string") + " field \"text\" (each row needs {\"text\": \"...\"})");
        }
        return row;
    }
}
