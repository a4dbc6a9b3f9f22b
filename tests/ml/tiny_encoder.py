"""A tiny randomly initialised sentence encoder saved to a folder (tests cannot download
weights): a 2-layer BERT of width 32 with a word-piece vocabulary of the test's words."""

from pathlib import Path

WORDS = ["white", "green", "ceramic", "teapot", "knitted", "tea", "cosy", "oak", "serving",
         "tray", "linen", "napkin", "set", "zorbing", "ball", "kettle", "lantern", "holder"]


def build_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    try:  # sentence-transformers 5.x; 3.x and 4.x keep the modules in .models
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    # built with the tokenizers library itself: how transformers' BERT tokenizer reads a
    # vocab file has changed between its versions
    tok = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
                            ).save_pretrained(raw)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=32)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = models.Pooling(dim(), pooling_mode="mean")
    out = folder / "model"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(out))
    return out
