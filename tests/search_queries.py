"""The labelled search set: articles and queries written by hand, in Arabic, Persian,
Turkish and English, with the exact set of articles each query must return.

Nothing here comes from the folding code. Each query is typed the way a reader
commonly types it, and the article it must find spells the word another way
(harakat, hamza, alef maqsura, ta marbuta, Persian or Arabic yeh and kaf, ZWNJ,
tatweel, Eastern digits, the article and its proclitics, Turkish letters, Latin
accents). The expected sets are exact, so every query also checks that folding
merged nothing else: an article that does not contain the word, in any spelling,
must not come back. The queries marked "apart" exist only for that.
"""

from __future__ import annotations

# key -> (language, title, body)
ARTICLES: dict[str, tuple[str, str, str]] = {
    # --- Arabic --------------------------------------------------------------------------
    "ar_oman": (
        "ar",
        "سلطنة عُمان تفتتح ميناءً جديداً",
        "افتتحت سلطنةُ عُمانَ ميناءً جديداً على بحر العرب، وقال وزيرُ النقل إنّ المشروعَ "
        "سيخدمُ التجارةَ الإقليمية.",
    ),
    "ar_gold": (
        "ar",
        "أسعار الذهب ترتفع في أسواق الخليج",
        "ارتفعت أسعارُ الذهبِ اليومَ بنسبة ٣٤ بالمئة في أسواق دبي والكويت، وقال تاجرٌ إن "
        "الطلب على المعدن الأصفر زاد.",
    ),
    "ar_oilprice": (
        "ar",
        "أسعار النفط تتراجع",
        "تراجعت أسعار النفط بعد قرار أوبك زيادة الإنتاج في الشهر المقبل.",
    ),
    "ar_bread": (
        "ar",
        "سعر الخبز ثابت",
        "قالت الوزارة إن سعر رغيف الخبز سيبقى ثابتاً هذا العام.",
    ),
    "ar_iran": (
        "ar",
        "إيران تعلن استئناف المباحثات",
        "أعلنت إيران أن المباحثات مع الوكالة الدولية ستُستأنف الأسبوع المقبل في فيينا.",
    ),
    "ar_iraq": (
        "ar",
        "العراق يوقّع اتفاقاً مع الكويت",
        "وقّع العراقُ اتفاقاً لتصدير النفط عبر ميناء البصرة إلى الأسواق الآسيوية.",
    ),
    "ar_economy": (
        "ar",
        "الاقتصـــاد المصري ينمو",
        "قال البنك المركزي إن الاقتصـــاد نما في الربع الثالث، وإن التضخّم تراجع إلى مستوى أدنى.",
    ),
    "ar_library": (
        "ar",
        "مكتبة الإسكندرية تستقبل الزوار",
        "استقبلت مكتبةُ الإسكندرية أكثر من مليون زائر هذا العام، وللمكتبة فروع في عدة مدن.",
    ),
    "ar_hospital": (
        "ar",
        "مستشفى جديد في مكة",
        "افتُتح مستشفى جديد بمكة المكرمة، ويضم المستشفى مئتي سرير.",
    ),
    "ar_pilgrims": (
        "ar",
        "الحجاج يصلون إلى مكة",
        "وصل آلاف الحجاج إلى مكة المكرمة، وقال أحدهم إن الله يسّر رحلتهم.",
    ),
    "ar_award": (
        "ar",
        "تكريم مهندسة شابة",
        "قدّم له الوزير جائزة التميز في حفل أقيم بالرياض، ثم شكر فريقه.",
    ),
    "ar_now": (
        "ar",
        "الرحلات تعود الآن",
        "قالت شركة الطيران إن الرحلات إلى بيروت تعود الآن بعد توقف دام أسبوعاً.",
    ),
    "ar_wasla": (
        "ar",
        "ٱلمطر يغمر ٱلشوارع",
        "غمرت ٱلأمطار شوارع جدة صباح ٱلاثنين.",
    ),
    # --- Persian ---------------------------------------------------------------------------
    "fa_iran": (
        "fa",
        "دیدار وزیران خارجه ایران و عراق",
        "وزیران خارجه ایران و عراق در تهران دیدار کردند و دربارهٔ آب رودخانه‌ها گفت‌وگو کردند.",
    ),
    "fa_library": (
        "fa",
        "کتابخانه ملی میزبان نمایشگاه",
        "کتابخانه ملی نمایشگاهی از نسخه‌های خطی برگزار کرد و کتاب‌های کمیاب در آن عرضه شد.",
    ),
    "fa_inflation": (
        "fa",
        "تورم به ۳۴ درصد رسید",
        "مرکز آمار اعلام کرد نرخ تورم در ماه گذشته به ۳۴ درصد رسید و قیمت نان ۱۲ درصد بالا رفت.",
    ),
    "fa_water": (
        "fa",
        "مسئلهٔ کم‌آبی در اصفهان",
        "مسئلهٔ کم‌آبی در اصفهان جدی است و کشاورزان می‌گویند زاینده‌رود خشک شده است.",
    ),
    "fa_artists": (
        "fa",
        "خانۀ هنرمندان بازگشایی شد",
        "خانۀ هنرمندان در تهران پس از دو سال تعمیر دوباره بازگشایی شد.",
    ),
    "fa_festival": (  # typed with Arabic kaf and yeh, as some outlets do
        "fa",
        "كرمانشاه ميزبان جشنواره فيلم كوتاه",
        "جشنواره فيلم كوتاه امسال در كرمانشاه برگزار مي‌شود و داوران آن معرفي شدند.",
    ),
    "fa_pattern": (
        "fa",
        "الگو برای مصرف آب",
        "کارشناسان یک الگو برای مصرف آب در شهرها پیشنهاد کردند.",
    ),
    # --- Turkish ---------------------------------------------------------------------------
    "tr_sirnak": (
        "tr",
        "ŞIRNAK'TA SEL FELAKETİ",
        "Şırnak'ta şiddetli yağışlar sonrası sel meydana geldi. Valilik bir açıklama yaptı.",
    ),
    "tr_gold": (
        "tr",
        "İstanbul'da altın fiyatları yükseldi",
        "Kapalıçarşı'da gram altın rekor kırdı; kuyumcular İSTANBUL genelinde talebin arttığını "
        "söyledi.",
    ),
    "tr_izmir": (
        "tr",
        "İzmir'de liman grevi",
        "İzmir limanında işçiler greve gitti ve ihracat durdu.",
    ),
    "tr_ankara": (
        "tr",
        "Ankara'da öğretmenler eylem yaptı",
        "Öğretmenler maaş artışı için Kızılay Meydanı'nda toplandı.",
    ),
    # --- English ---------------------------------------------------------------------------
    "en_oil": (
        "en",
        "Oil prices rise as Gulf output dips",
        "Brent crude rose 2% on Monday after OPEC+ producers said output would fall.",
    ),
    "en_oman": (
        "en",
        "Oman opens new port on Arabian Sea",
        "The Sultanate of Oman opened a deepwater port at Duqm, the transport minister said.",
    ),
    "en_floods": (
        "en",
        "Floods hit Şırnak province",
        "Heavy rain caused floods in Şırnak, in southeastern Türkiye, on Sunday.",
    ),
    "en_cafe": (
        "en",
        "Café culture returns to Beirut",
        "Beirut's cafés reopened after the holiday, their owners said.",
    ),
    "en_quake": (
        "en",
        "Quake kills 34 in eastern Turkey",
        "At least 34 people died when a strong earthquake struck Van province.",
    ),
    "en_zurich": (
        "en",
        "Zürich bank opens Gulf office",
        "A private bank from Zürich opened an office in Doha to serve clients in the region.",
    ),
}

# (query as typed, the exact keys it must return)
QUERIES: list[tuple[str, set[str]]] = [
    # Arabic: harakat, shadda, tanween
    ("عمان", {"ar_oman"}),
    ("ميناء", {"ar_oman", "ar_iraq"}),
    ("جديدا", {"ar_oman"}),
    ("وقع", {"ar_iraq"}),
    ("التضخم", {"ar_economy"}),
    ("ستستانف", {"ar_iran"}),
    # hamza forms of alef
    ("اسعار", {"ar_gold", "ar_oilprice"}),
    ("ايران", {"ar_iran", "fa_iran"}),
    ("الاسكندرية", {"ar_library"}),
    ("الاقليمية", {"ar_oman"}),
    ("اعلنت", {"ar_iran"}),
    ("الاسيوية", {"ar_iraq"}),
    # the article and its proclitics
    ("ذهب", {"ar_gold"}),
    ("الذهب", {"ar_gold"}),
    ("كويت", {"ar_gold", "ar_iraq"}),
    ("الكويت", {"ar_gold", "ar_iraq"}),
    ("عراق", {"ar_iraq", "fa_iran"}),
    ("العراق", {"ar_iraq", "fa_iran"}),
    ("المكتبة", {"ar_library"}),
    ("مكتبة", {"ar_library"}),
    ("نفط", {"ar_oilprice", "ar_iraq"}),
    ("رياض", {"ar_award"}),
    ("امطار", {"ar_wasla"}),
    ("المطر", {"ar_wasla"}),
    # ta marbuta and heh, alef maqsura and yeh, tatweel
    ("سلطنه", {"ar_oman"}),
    ("مستشفي", {"ar_hospital"}),
    ("مكه", {"ar_hospital", "ar_pilgrims"}),
    ("الاقتصاد", {"ar_economy"}),
    ("اقتصاد", {"ar_economy"}),
    # Arabic websearch syntax
    ('"أسعار الذهب"', {"ar_gold"}),
    ("اسعار -الذهب", {"ar_oilprice"}),
    ("مكتبة or مستشفى", {"ar_library", "ar_hospital"}),
    # Persian: yeh, kaf, heh with yeh above, hamza, ZWNJ
    ("ایران", {"ar_iran", "fa_iran"}),
    ("كتابخانه", {"fa_library"}),
    ("کتاب", {"fa_library"}),
    ("نسخه", {"fa_library"}),
    ("خانه", {"fa_artists"}),
    ("مسئله", {"fa_water"}),
    ("کرمانشاه", {"fa_festival"}),
    ("جشنواره فیلم", {"fa_festival"}),
    ("معرفی", {"fa_festival"}),
    ("رودخانه", {"fa_iran"}),
    ("درباره", {"fa_iran"}),
    ("الگو", {"fa_pattern"}),
    # Eastern Arabic and Persian digits
    ("34", {"ar_gold", "fa_inflation", "en_quake"}),
    ("۳۴", {"ar_gold", "fa_inflation", "en_quake"}),
    ("٣٤", {"ar_gold", "fa_inflation", "en_quake"}),
    ("12", {"fa_inflation"}),
    # Turkish: dotted and dotless I in both cases, and its other letters
    ("sirnak", {"tr_sirnak", "en_floods"}),
    ("ŞIRNAK", {"tr_sirnak", "en_floods"}),
    ("şırnak", {"tr_sirnak", "en_floods"}),
    ("felaketi", {"tr_sirnak"}),
    ("yagislar", {"tr_sirnak"}),
    ("aciklama", {"tr_sirnak"}),
    ("istanbul", {"tr_gold"}),
    ("ISTANBUL", {"tr_gold"}),
    ("altin fiyatlari", {"tr_gold"}),
    ("kapalicarsi", {"tr_gold"}),
    ("izmir", {"tr_izmir"}),
    ("IZMIR", {"tr_izmir"}),
    ("isciler", {"tr_izmir"}),
    ("ogretmenler", {"tr_ankara"}),
    ("kizilay", {"tr_ankara"}),
    ("turkiye", {"en_floods"}),
    # English: stems, phrases, exclusion, Latin accents
    ("oil price", {"en_oil"}),
    ("producer", {"en_oil"}),
    ('"oil prices" -brent', set()),
    ('"gulf output"', {"en_oil"}),
    ("oman", {"en_oman"}),
    ("cafe", {"en_cafe"}),
    ("cafes", {"en_cafe"}),
    ("zurich", {"en_zurich"}),
    ("quake or floods", {"en_quake", "en_floods"}),
    # apart: folding must not merge these with a word they are not
    ("الله", {"ar_pilgrims"}),  # not له ("to him")
    ("له", {"ar_award"}),  # not الله
    ("الآن", {"ar_now"}),  # not أن / إن
    ("سعر", {"ar_bread"}),  # not أسعار
    ("گو", set()),  # not الگو
    ("کتابخانه -خانه", {"fa_library"}),  # the compound is its own word, not خانه
    ("ملك", set()),  # not مكة, مكتبة
    ("oma", set()),  # no prefix matching
]
